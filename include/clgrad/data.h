/* clgrad/data.h — being written (see the overview once filled). */
#ifndef CLGRAD_DATA_H
#define CLGRAD_DATA_H
#include "clgrad/tensor.h"
#endif
