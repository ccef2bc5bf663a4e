"""Entry point for `pulumi up` (and the offline plan, which runs this same file under the SDK's mocks)."""

from stamps.program import run

run()
