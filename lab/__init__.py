"""The lab: a simulated shop to try policies in, and the evaluation that judges
them against a no-contact control.

Nothing here runs in the worker. It sits beside `nudge.streams`, above
`nudge.models` (it trains and serves models as the worker would) and below
the CLI (`nudge simulate`, `nudge evaluate`, `nudge experiments`):

- the world: `shop` (categories, pages, hours, zones), `shoppers` (hidden
  archetypes and each person's memory), `simulation` (the seeded event loop);
- the policies it compares: `baselines` (nudge, blast, silence);
- judging a run: `evaluate`, `incremental` (uplift over the no-contact arm),
  `harms`;
- judging a real log: `logged` and `ope` (off-policy estimates of a candidate),
  `readout` (experiment arms);
- checks of the models against known truth: `cycles_check`, `persona_check`,
  `ope_check`.
"""
