"""A fleet's stack set run by an existing engine: a GitHub Actions workflow, and a JSON listing for other CI.

The workflow has one job per wave (`units.waves`): the job's matrix lists the wave's stacks, so each stack is a
job of its own running `pulumi up --stack <stack> --policy-pack policy` through the official `pulumi/actions`
action, and each wave `needs:` the wave before it: GitHub skips a job whose needed job failed, so a failed stack
stops every later wave. Within a wave `fail-fast` is off on purpose: GitHub cancels a job by SIGINT and kills it
seconds later, and a killed `pulumi up` leaves pending operations in the state and the stack's lock held (the
local engine, too, lets running stacks finish). A first job plans the whole fleet offline with the policy pack,
fleet-wide policies included, before any stack is touched; without cloud credentials it is the only job that
runs. A wave wider than GitHub's 256-job matrix limit becomes several jobs with the same `needs:`.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import yaml

from stamps.environment import Environment
from stamps.stacks.units import Unit, needs, units, waves

MATRIX_LIMIT = 256  # GitHub: "A matrix can generate a maximum of 256 jobs per workflow run."
SECRETS = ("PULUMI_ACCESS_TOKEN", "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_ID")
# What a change to redeploys the fleet: the program, its config and the policy pack.
PROGRAM_PATHS = ("Pulumi.yaml", "__main__.py", "pyproject.toml", "requirements.txt", "stamps/**", "policy/**")


def workflow_path(fleet: str) -> str:
    return f".github/workflows/deploy-{fleet}.yml"


def listing(env: Environment, fleet: str) -> list[dict[str, Any]]:
    """Every unit stack with its layer, its wave (1 = first) and the stacks it reads: the order any CI needs."""
    out = []
    for n, wave in enumerate(waves(env, units(env)), 1):
        for unit in wave:
            out.append({"stack": unit.stack(fleet), "layer": unit.layer, "wave": n,
                        "needs": [u.stack(fleet) for u in needs(env, unit)]})
    return out


def deploy_job(fleet: str, chunk: list[Unit], setup: list[dict[str, Any]], secrets: dict[str, str],
               parallel: int) -> dict[str, Any]:
    """One wave's job: a matrix of its stacks, each `pulumi up` with the policy pack."""
    return {
        "runs-on": "ubuntu-latest",
        # API Management and SQL can take most of an hour to create.
        "timeout-minutes": 120,
        "strategy": {"fail-fast": False, "max-parallel": parallel,
                     "matrix": {"stack": [u.stack(fleet) for u in chunk]}},
        "steps": [
            *setup,
            # The azure-native plugin (~100 MB) is downloaded once per provider version.
            {"uses": "actions/cache@v4",
             "with": {"path": "~/.pulumi/plugins",
                      "key": "pulumi-plugins-${{ runner.os }}-azure-native-${{ env.AZURE_NATIVE_VERSION }}"}},
            {"uses": "azure/login@v2",
             "with": {"client-id": secrets["AZURE_CLIENT_ID"], "tenant-id": secrets["AZURE_TENANT_ID"],
                      "subscription-id": secrets["AZURE_SUBSCRIPTION_ID"]}},
            {"uses": "pulumi/actions@v6",
             "with": {"pulumi-version": "${{ env.PULUMI_VERSION }}", "command": "up",
                      "stack-name": "${{ vars.PULUMI_ORG && format('{0}/{1}', vars.PULUMI_ORG, matrix.stack) "
                                    "|| matrix.stack }}",
                      "work-dir": ".", "upsert": True, "policyPacks": "policy",
                      "message": "${{ github.workflow }} #${{ github.run_number }}: ${{ github.sha }}"}},
        ],
    }


def workflow(env: Environment, fleet: str, *, branch: str = "main", parallel: int = 4) -> dict[str, Any]:
    pulumi_version = metadata.version("pulumi")
    azure_native_version = metadata.version("pulumi-azure-native")
    secrets = {name: f"${{{{ secrets.{name} }}}}" for name in SECRETS}
    setup: list[dict[str, Any]] = [
        {"uses": "actions/checkout@v4"},
        {"uses": "actions/setup-python@v5",
         "with": {"python-version": "3.11", "cache": "pip", "cache-dependency-path": "pyproject.toml"}},
        # Pulumi.yaml's virtualenv and policy/PulumiPolicy.yaml (../.venv) both use .venv.
        {"name": "Install", "run": "python -m venv .venv\n.venv/bin/pip install -q --upgrade pip\n"
                                   ".venv/bin/pip install -q -e .\n"},
    ]
    jobs: dict[str, Any] = {
        "plan": {
            "name": f"offline plan of {fleet} + policy pack (every stack and the fleet view)",
            "runs-on": "ubuntu-latest",
            "timeout-minutes": 30,
            "outputs": {"cloud": "${{ steps.credentials.outputs.present }}"},
            "steps": [*setup,
                      {"name": "Plan the stack set with the policy pack",
                       "run": f".venv/bin/stamps plan --fleet {fleet} --no-tree --policy"},
                      {"name": "Cloud credentials configured?", "id": "credentials", "env": secrets,
                       # A job-level `if:` cannot read secrets; this output carries only whether all are set.
                       "run": "if [ -n \"$" + "\" ] && [ -n \"$".join(SECRETS) + "\" ]; then\n"
                              "  echo \"present=true\" >> \"$GITHUB_OUTPUT\"\nelse\n"
                              "  echo \"present=false\" >> \"$GITHUB_OUTPUT\"\n"
                              "  echo \"::notice::no Azure/Pulumi credentials: nothing deployed\"\nfi\n"}],
        },
    }
    previous = ["plan"]
    for n, wave in enumerate(waves(env, units(env)), 1):
        chunks = [wave[i:i + MATRIX_LIMIT] for i in range(0, len(wave), MATRIX_LIMIT)]
        ids = [f"wave-{n}" if len(chunks) == 1 else f"wave-{n}-{k}" for k in range(1, len(chunks) + 1)]
        for job_id, chunk in zip(ids, chunks, strict=True):
            job: dict[str, Any] = {
                "name": f"wave {n}: {', '.join(dict.fromkeys(u.layer for u in chunk))} (${{{{ matrix.stack }}}})",
                "needs": list(previous),
            }
            if n == 1:
                job["if"] = "needs.plan.outputs.cloud == 'true'"
            jobs[job_id] = job | deploy_job(fleet, chunk, setup, secrets, parallel)
        previous = ids
    return {
        "name": f"deploy {fleet}",
        "on": {"workflow_dispatch": {},
               "push": {"branches": [branch], "paths": [f"Pulumi.{fleet}.yaml", *PROGRAM_PATHS]}},
        "permissions": {"contents": "read", "id-token": "write"},
        # One run of the fleet at a time, never cancelled: a cancelled `pulumi up` leaves its stack locked.
        "concurrency": {"group": f"deploy-{fleet}", "cancel-in-progress": False},
        "env": {
            "PULUMI_VERSION": pulumi_version,
            "AZURE_NATIVE_VERSION": azure_native_version,
            "PULUMI_ACCESS_TOKEN": secrets["PULUMI_ACCESS_TOKEN"],
            # azure-native gets its own OIDC tokens from GitHub, so an update longer than the CLI login's token
            # lifetime still authenticates; azure/login signs in the az CLI with the same federated identity.
            "ARM_USE_OIDC": "true",
            "ARM_CLIENT_ID": secrets["AZURE_CLIENT_ID"],
            "ARM_TENANT_ID": secrets["AZURE_TENANT_ID"],
            "ARM_SUBSCRIPTION_ID": secrets["AZURE_SUBSCRIPTION_ID"],
        },
        "jobs": jobs,
    }


class _Dumper(yaml.SafeDumper):
    """Plain YAML as a person would write the workflow: no anchors, multi-line scripts as `|` blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _str)


def render(env: Environment, fleet: str, **options: Any) -> str:
    head = (f"# Generated from Pulumi.{fleet}.yaml by `stamps stacks --fleet {fleet} --github-workflow --out "
            f"{workflow_path(fleet)}`.\n# Do not edit: the tests fail when it differs from the fleet.\n"
            "# One job per wave of unit stacks (README \"One stack per unit\"); a stack's job is `pulumi up` with the\n"
            "# policy pack, after every stack it reads. Regenerate after changing the fleet's regions or CELLs.\n"
            "#\n"
            "# Secrets: PULUMI_ACCESS_TOKEN; AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_SUBSCRIPTION_ID (the federated\n"
            "# identity of stamps.yml, subject `repo:<owner>/<repo>:ref:refs/heads/main`, with Contributor and Role\n"
            "# Based Access Control Administrator on the subscription: the stacks create role assignments).\n"
            "# Variable (optional): PULUMI_ORG, the Pulumi organization of the stacks (default: the token's).\n")
    return head + yaml.dump(workflow(env, fleet, **options), Dumper=_Dumper, sort_keys=False, width=120)
