"""The offline engine: `pulumi preview` without a CLI, as a plan you can print, save, diff and check."""

from stamps.offline.engine import StackFileError, plan_stack, read_project, read_stack_config
from stamps.offline.plan import Plan, PlanDiff, diff_plans

__all__ = ["Plan", "PlanDiff", "StackFileError", "diff_plans", "plan_stack", "read_project", "read_stack_config"]
