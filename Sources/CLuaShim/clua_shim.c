#include "clua_shim.h"
