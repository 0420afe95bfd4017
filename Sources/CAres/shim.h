#ifndef STARLING_CARES_SHIM_H
#define STARLING_CARES_SHIM_H
/* Import Swift's Glibc module first, so the system headers ares.h includes (netinet/in.h,
 * sys/socket.h, ...) are skipped by their include guards instead of being copied textually into
 * this module. Otherwise Swift may decide that `in_addr`, `sockaddr_in`, ... are defined by CAres,
 * and with MemberImportVisibility every file using them would then have to import CAres. */
#pragma clang module import SwiftGlibc
#include <ares.h>
#endif
