/* clgrad/optim.h — being written (see the overview once filled). */
#ifndef CLGRAD_OPTIM_H
#define CLGRAD_OPTIM_H
#include "clgrad/tensor.h"
#endif
