#ifndef STARLING_CHIREDIS_H
#define STARLING_CHIREDIS_H
#include <hiredis/hiredis.h>
#include <sys/time.h>

/* redisCommand is variadic, which Swift cannot call; Starling only sends argv commands
 * (redisCommandArgv / redisAppendCommandArgv), so nothing else is wrapped. */
static inline int starling_redis_err(const redisContext *c) { return c ? c->err : -1; }
static inline const char *starling_redis_errstr(const redisContext *c) { return c ? c->errstr : "no context"; }
static inline int starling_redis_fd(const redisContext *c) { return c ? c->fd : -1; }
#endif
