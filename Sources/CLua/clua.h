/* Debian's liblua5.4-dev; include path from pkg-config lua5.4 */
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
