// How many CPU threads a rank uses when the run does not say (--threads 0).
//
// All cores of the machine would oversubscribe it as soon as several ranks share a node
// (under mpirun every rank would start one thread per core) and ignore a launcher's or a
// cgroup's CPU binding. The rule: a rank that was bound to fewer cores than the machine has
// uses exactly those; an unbound rank gets an equal share of its cores with the other ranks
// of its node; always at least 1, never more than the rank may run on.
#pragma once

namespace fot {

// The rule above as a pure function (tests): `allowed` = cores in this process's affinity
// mask, `hardware` = cores of the machine, `node_ranks` = ranks of the run on this node.
int default_thread_count(int allowed, int hardware, int node_ranks);

// Cores in this process's affinity mask (sched_getaffinity; the hardware count if unknown).
int allowed_cpu_count();
// Cores of the machine (online processors).
int hardware_cpu_count();

}  // namespace fot
