"""The structured super tickets of Liang et al. 2021: heads and FFN units pruned by their importance
on a task. `importance.py` scores the units, `levels.py` names the levels and unit kinds,
`tickets.py` selects and saves the winning, losing and random tickets, `register.py` registers
`st-winning`, `st-random` and `st-losing` (run by `ticketlab super`, `studies.supertickets`)."""
