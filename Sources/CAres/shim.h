#ifndef STARLING_CARES_SHIM_H
#define STARLING_CARES_SHIM_H
#include <ares.h>
#endif
