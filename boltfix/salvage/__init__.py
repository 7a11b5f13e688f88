"""Salvage beyond the reachable tree: records the damage cut off but the
file still holds, placed only where an invariant of bbolt or etcd proves
they belong (the rules: :mod:`boltfix.salvage.rules`).

* :mod:`~boltfix.salvage.inputs`: what the rules need from the walk;
* :mod:`~boltfix.salvage.plan`: the plan (placed records, evidence);
* :mod:`~boltfix.salvage.rules`: rules 1, 2 and 4, and the planner;
* :mod:`~boltfix.salvage.revisions`: rule 3 (etcd's ``key`` bucket);
* :mod:`~boltfix.salvage.merge`: the plan merged into repair's stream, rule 5;
* :mod:`~boltfix.salvage.lostfound`: the evidence as a separate file.

What :mod:`boltfix.repair` uses is importable from here.
"""

from boltfix.salvage.inputs import Dedupe, Inputs, Pruned, PruneLog, inputs_from_walk
from boltfix.salvage.lostfound import evidence_records, write_lost_found
from boltfix.salvage.merge import Seen, merged, rule_5
from boltfix.salvage.plan import Evidence, Placed, Plan
from boltfix.salvage.rules import etcd_by_content, plan_root_lost, plan_salvage, walk_subtree

__all__ = ["Dedupe", "Evidence", "Inputs", "Placed", "Plan", "PruneLog", "Pruned", "Seen",
           "etcd_by_content", "evidence_records", "inputs_from_walk", "merged",
           "plan_root_lost", "plan_salvage", "rule_5", "walk_subtree", "write_lost_found"]
