"""What the tests share: one import path for all of it (``tests/`` is on
``sys.path``: pytest's ``pythonpath``).

* :mod:`support.cli`: boltfix's CLI run in this process, or as a child;
* :mod:`support.protobuf`: the tests' own protobuf encoder;
* :mod:`support.damage`: crafted damage of the real-bbolt fixtures;
* :mod:`support.oracle`: the real bbolt (boltgen);
* :mod:`support.raftgen`: the real HashiCorp raft-boltdb (raftgen);
* :mod:`support.etcdtools`: real etcd servers, data dirs, snapshots;
* :mod:`support.k8sbytes`: Kubernetes' storage bytes (the tests' own encoder);
* :mod:`support.k8sgen`: Kubernetes' storage bytes by Kubernetes' own code;
* :mod:`support.files`, :mod:`support.measure`, :mod:`support.fuzz`,
  :mod:`support.salvage`, :mod:`support.served`: files, memory and time,
  fuzzing, salvage and etcd fixtures several test modules use.

No test module imports another test module: what two of them need is here.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
