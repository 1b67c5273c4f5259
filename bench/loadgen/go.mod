module roost.local/bench/loadgen

go 1.19
