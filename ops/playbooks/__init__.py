"""The runbook's playbooks, one module each; every one changes the stack through `Context.apply`."""

# Module names under ops.playbooks, each exposing `register(subparsers)`.
PLAYBOOKS: tuple[str, ...] = (
    "onboard", "failover", "isolate", "restore", "release", "migrate", "scale", "maintenance", "incident",
    "split_state", "deploy", "rollout",
)
