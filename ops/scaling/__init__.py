"""The scale playbook's pieces that need no stack: `readings` (what Azure Monitor says about a CELL) and
`decisions` (what to do about it). The SQL service-objective rules they use live in `stamps.config.sql_skus`;
the playbook itself (state, stack updates, CLI) is `ops.playbooks.scale`."""
