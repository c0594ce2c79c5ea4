// The smoke-test workload: standard library only.
module platform.local/cluster/tools/hello

go 1.24.0
