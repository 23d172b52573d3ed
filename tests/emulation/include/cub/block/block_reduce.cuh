#pragma once
// Stand-in for <cub/block/block_reduce.cuh> in the kernel emulation tests: see ../cub.cuh.
#include "../cub.cuh"
