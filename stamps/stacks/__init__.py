"""The fleet as independent deployment units: one Pulumi stack per layer, per region and per CELL instance.

`units` names the stacks and their order, `contracts` types what each stack exports and its downstream
stacks read, `compose` declares one unit (or the whole fleet in one stack) from the same components.
"""
