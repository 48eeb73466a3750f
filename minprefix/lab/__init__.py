"""The lab: experiment machinery built on the teaching core, never imported by it.

Two rooms, the lower first: what every experiment reads, then the experiments (each imports only the first room).

- `grid`: a resumable grid of tuning runs, run in parallel processes, and whether finished runs converged
- `studies`: the rows and studies of `compare`, named once for it and its report
- `compare`: the papers' claims measured on the tiny world (one grid); `report` turns its data into tables,
  verdicts and figures
- `sweep`: each method's learning rate, swept until its best is inside the range (the defaults)
- `reparam`: lesson 5's grids on Li & Liang's MLP (stability, bottleneck, sharing, initialization)
- `bench`: speed and memory of tuning against full fine-tuning and PEFT, as ratios from one run
- `figures`: every figure of the README and the lessons, drawn by code
- `demo`: every kind of prompt on the shipped base, side by side
- `lesson`: what every lesson does first (`setup`), its exercise list, and `solution(n)`, which prints an
  exercise's reference only when a learner asks
"""
