/*
 * CLuaShim: the generic KSR dispatcher, KSR.x, the allocator with a memory cap, the instruction
 * budget hook and the protected setup steps. All Lua errors are raised here, never in Swift.
 */
#include "clua_shim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ksr_host *ksr_host_of(lua_State *L) { return *(ksr_host **)lua_getextraspace(L); }

/* Registry key of the table of files loaded by `require`. */
static const char ksr_files_key = 0;

/* ---- Allocator with a cap ---------------------------------------------------------------- */

static void *ksr_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    ksr_host *h = (ksr_host *)ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        h->mem_used -= old;
        return NULL;
    }
    if (h->mem_limit != 0 && nsize > old && h->mem_used - old + nsize > h->mem_limit) {
        h->mem_hit = 1;
        return NULL; /* Lua runs an emergency GC, then raises a memory error */
    }
    void *p = realloc(ptr, nsize);
    if (p == NULL) {
        h->mem_hit = 1;
        return NULL;
    }
    h->mem_used = h->mem_used - old + nsize;
    return p;
}

static int ksr_panic(lua_State *L) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "starling: unprotected Lua error: %s\n", msg ? msg : "?");
    return 0; /* Lua aborts */
}

/* ---- Instruction budget ------------------------------------------------------------------ */

static void ksr_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    ksr_host *h = ksr_host_of(L);
    if (!h->armed) return;
    if (h->budget_hit) {
        luaL_error(L, "instruction budget exceeded");
        return;
    }
    if (lua_gethookcount(L) != KSR_HOOK_STEP) { /* a coroutine left over from an aborted callback */
        lua_sethook(L, ksr_hook, LUA_MASKCOUNT, KSR_HOOK_STEP);
        return;
    }
    h->remaining -= KSR_HOOK_STEP;
    if (h->remaining <= 0) {
        h->budget_hit = 1;
        /* raise on every instruction from now on, so user pcall loops cannot keep running */
        lua_sethook(L, ksr_hook, LUA_MASKCOUNT, 1);
        /* Level 0 is the interrupted Lua function (a hook has no frame of its own): its file:line,
           not luaL_error's level 1. %I is lua_pushfstring's lua_Integer (it has no %lld). */
        luaL_where(L, 0);
        luaL_error(L, "%sinstruction budget exceeded (%I instructions)", lua_tostring(L, -1), (lua_Integer)h->budget);
    }
}

void ksr_set_budget_hook(lua_State *L, int on) {
    if (on) lua_sethook(L, ksr_hook, LUA_MASKCOUNT, KSR_HOOK_STEP);
    else lua_sethook(L, NULL, 0, 0);
}

static void ksr_arm(lua_State *L, ksr_host *h) {
    h->remaining = h->budget;
    h->budget_hit = 0;
    h->mem_hit = 0;
    h->armed = h->budget > 0;
}

static void ksr_disarm(lua_State *L, ksr_host *h) {
    if (h->budget_hit) lua_sethook(L, ksr_hook, LUA_MASKCOUNT, KSR_HOOK_STEP);
    h->armed = 0;
}

lua_State *ksr_newstate(ksr_host *host) {
    lua_State *L = lua_newstate(ksr_alloc, host);
    if (L == NULL) return NULL;
    *(ksr_host **)lua_getextraspace(L) = host;
    lua_atpanic(L, ksr_panic);
    if (host->budget > 0) lua_sethook(L, ksr_hook, LUA_MASKCOUNT, KSR_HOOK_STEP);
    return L;
}

/* ---- Argument conversion (app_lua's sr_kemi_lua_exec_func_ex) ---------------------------- */

#define KSR_NUMBUF 48

/* str: strings as they are; numbers as Lua 5.1 prints them (%.14g); anything else NULL/0. */
static void ksr_arg_str(lua_State *L, int idx, ksr_param *p, char *buf) {
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        p->s = lua_tolstring(L, idx, &p->len);
        break;
    case LUA_TNUMBER: {
        int n;
        if (lua_isinteger(L, idx)) n = snprintf(buf, KSR_NUMBUF, "%lld", (long long)lua_tointeger(L, idx));
        else n = snprintf(buf, KSR_NUMBUF, "%.14g", (double)lua_tonumber(L, idx));
        if (n < 0) n = 0;
        if (n >= KSR_NUMBUF) n = KSR_NUMBUF - 1;
        p->s = buf;
        p->len = (size_t)n;
        break;
    }
    default:
        p->s = NULL;
        p->len = 0;
    }
}

static long long ksr_trunc(lua_Number d) {
    if (!(d == d) || d >= 9.2e18 || d <= -9.2e18) return 0;
    return (long long)d; /* C cast truncates toward zero, like Lua 5.1's lua_tointeger */
}

/* int: integers as they are, floats truncated toward zero, numeric strings converted, else 0. */
static void ksr_arg_int(lua_State *L, int idx, ksr_param *p) {
    int t = lua_type(L, idx);
    p->i = 0;
    if (t == LUA_TNUMBER || t == LUA_TSTRING) {
        int ok = 0;
        lua_Integer v = lua_tointegerx(L, idx, &ok);
        if (ok) {
            p->i = (long long)v;
        } else {
            lua_Number d = lua_tonumberx(L, idx, &ok);
            if (ok) p->i = ksr_trunc(d);
        }
    }
}

static int ksr_push_ret(lua_State *L, const ksr_ret *r) {
    switch (r->kind) {
    case KSR_RET_NOTHING: return 0;
    case KSR_RET_NIL: lua_pushnil(L); return 1;
    case KSR_RET_INT: lua_pushinteger(L, (lua_Integer)r->i); return 1;
    case KSR_RET_BOOL: lua_pushboolean(L, r->i != 0); return 1;
    case KSR_RET_STR:
        if (r->s != NULL) lua_pushlstring(L, r->s, r->len);
        else lua_pushliteral(L, "");
        return 1;
    default: lua_pushboolean(L, 0); return 1;
    }
}

/* Continuation of a KSR call that yielded (async_io): the route was resumed, Swift hands over the
 * result of the wait (converted by the export's return type) and it is returned to the script. */
static int ksr_dispatch_k(lua_State *L, int status, lua_KContext kctx) {
    (void)status;
    ksr_host *h = ksr_host_of(L);
    /* Resumed by the script (coroutine.resume on a route it kept), not by the host: its wait is
     * not over and the current message is another route's. */
    if (h->co != L) return luaL_error(L, "a route waiting in a KSR call was resumed by the script");
    ksr_ret r = {KSR_RET_NIL, 0, NULL, 0};
    h->resumed(h->ctx, (int)kctx, &r); /* Swift: never raises */
    return ksr_push_ret(L, &r);
}

/* What the dispatcher needs of one export, read once at setup: the closure's one upvalue (a full
 * userdata), so a call reads it with one lua_touserdata instead of converting an integer and a
 * string upvalue and scanning the signature. */
typedef struct ksr_fn_info {
    int index;                  /* export index */
    int np;                     /* parameters (letters of sig) */
    int required;               /* parameters a call must pass: up to the last lower-case letter */
    char sig[KSR_MAXPARAMS + 1]; /* one letter per param: s, i, l; upper case: trailing optional */
} ksr_fn_info;

/* The one dispatcher. Upvalue 1: the export's ksr_fn_info. */
static int ksr_dispatch(lua_State *L) {
    ksr_host *h = ksr_host_of(L);
    const ksr_fn_info *fi = (const ksr_fn_info *)lua_touserdata(L, lua_upvalueindex(1));
    int index = fi->index;
    int np = fi->np;
    const char *sig = fi->sig;
    int argc = lua_gettop(L);
    if (argc > KSR_MAXPARAMS) {
        h->log(h->ctx, KSR_LOG_TOO_MANY_ARGS, index, argc);
        lua_pushboolean(L, 0);
        return 1;
    }
    /* Upper-case letters are trailing optional parameters (absent: a null string / 0). */
    if (argc < fi->required) {
        h->log(h->ctx, KSR_LOG_TOO_FEW_ARGS, index, argc);
        lua_pushboolean(L, 0);
        return 1;
    }
    ksr_param p[KSR_MAXPARAMS];
    char nbuf[KSR_MAXPARAMS][KSR_NUMBUF];
    for (int i = 0; i < np; i++) {
        p[i].s = NULL;
        p[i].len = 0;
        p[i].i = 0;
        if (sig[i] == 's' || sig[i] == 'S') ksr_arg_str(L, i + 1, &p[i], nbuf[i]);
        else ksr_arg_int(L, i + 1, &p[i]);
    }
    ksr_ret r = {KSR_RET_NIL, 0, NULL, 0};
    /* Only the route coroutine itself may yield, and only where Lua allows it (not inside a
     * metamethod, a table.sort comparator or another C boundary). */
    int yieldable = h->co == L && lua_isyieldable(L);
    h->call(h->ctx, index, p, np, &r, yieldable); /* Swift: never raises */
    if (r.kind == KSR_RET_YIELD) {
        if (yieldable) return lua_yieldk(L, 0, (lua_KContext)index, ksr_dispatch_k); /* Swift frame gone */
        r.kind = KSR_RET_NIL;
    }
    return ksr_push_ret(L, &r);             /* Swift frame gone: pushing (may raise ERRMEM) is safe */
}

/* ---- KSR.x ------------------------------------------------------------------------------- */

static int ksr_x_exit(lua_State *L) {
    lua_pushliteral(L, KSR_EXIT_STRING);
    return lua_error(L);
}

static int ksr_x_drop(lua_State *L) {
    ksr_host *h = ksr_host_of(L);
    h->drop(h->ctx);
    return ksr_x_exit(L);
}

static int ksr_x_modf(lua_State *L) {
    ksr_host *h = ksr_host_of(L);
    int argc = lua_gettop(L);
    ksr_param p[KSR_MAXPARAMS + 1];
    char nbuf[KSR_MAXPARAMS + 1][KSR_NUMBUF];
    if (argc < 1 || argc > KSR_MAXPARAMS + 1) {
        h->log(h->ctx, argc < 1 ? KSR_LOG_TOO_FEW_ARGS : KSR_LOG_TOO_MANY_ARGS, -1, argc);
        lua_pushinteger(L, -1);
        return 1;
    }
    for (int i = 0; i < argc; i++) {
        p[i].i = 0;
        ksr_arg_str(L, i + 1, &p[i], nbuf[i]);
    }
    long long rv = h->modf(h->ctx, p, argc);
    lua_pushinteger(L, (lua_Integer)rv);
    return 1;
}

static int ksr_x_probe(lua_State *L) {
    (void)L;
    return 0;
}

/* ---- Protected setup --------------------------------------------------------------------- */

static const char ksr_compat_lua[] =
    "local files = ...\n"
    "unpack = unpack or table.unpack\n"
    "loadstring = loadstring or load\n"
    "if table.getn == nil then table.getn = function(t) return #t end end\n"
    "if math.pow == nil then math.pow = function(x, y) return x ^ y end end\n"
    "if math.mod == nil then math.mod = math.fmod end\n"
    "local searchers = package.searchers\n"
    "local lua_searcher = searchers[2]\n"
    "searchers[2] = function(name)\n"
    "  local loader, path = lua_searcher(name)\n"
    "  if type(loader) == 'function' and type(path) == 'string' then files[#files + 1] = path end\n"
    "  return loader, path\n"
    "end\n";

static int ksr_setup_libs_k(lua_State *L) {
    const char *dir = (const char *)lua_touserdata(L, 1);
    luaL_openlibs(L);
    lua_createtable(L, 4, 0);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ksr_files_key);
    if (luaL_loadbufferx(L, ksr_compat_lua, sizeof(ksr_compat_lua) - 1, "=starling-compat", "t") != LUA_OK)
        return lua_error(L);
    lua_insert(L, -2);
    lua_call(L, 1, 0);
    if (dir != NULL) {
        lua_getglobal(L, "package");
        lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
        lua_getfield(L, -2, "path");
        lua_concat(L, 2);
        lua_setfield(L, -2, "path");
        lua_pop(L, 1);
    }
    return 0;
}

int ksr_setup_libs(lua_State *L, const char *scriptdir) {
    lua_pushcfunction(L, ksr_setup_libs_k);
    lua_pushlightuserdata(L, (void *)scriptdir);
    return lua_pcall(L, 1, 0, 0);
}

/* Pushes KSR[module], creating it if needed (stack: KSR at ksr). */
static void ksr_module_table(lua_State *L, int ksr, const char *module) {
    if (module[0] == '\0') {
        lua_pushvalue(L, ksr);
        return;
    }
    if (lua_getfield(L, ksr, module) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 8);
        lua_pushvalue(L, -1);
        lua_setfield(L, ksr, module);
    }
}

static int ksr_setup_exports_k(lua_State *L) {
    const ksr_export_desc *d = (const ksr_export_desc *)lua_touserdata(L, 1);
    int n = (int)lua_tointeger(L, 2);
    lua_settop(L, 0);
    lua_createtable(L, 0, 64); /* KSR at 1 */
    for (int i = 0; i < n; i++) {
        ksr_module_table(L, 1, d[i].module);
        ksr_fn_info *fi = (ksr_fn_info *)lua_newuserdatauv(L, sizeof(ksr_fn_info), 0);
        memset(fi, 0, sizeof(*fi));
        fi->index = d[i].index;
        for (const char *c = d[i].sig; *c != '\0' && fi->np < KSR_MAXPARAMS; c++) {
            fi->sig[fi->np++] = *c;
            if (*c >= 'a' && *c <= 'z') fi->required = fi->np;
        }
        lua_pushcclosure(L, ksr_dispatch, 1);
        lua_setfield(L, -2, d[i].name);
        lua_pop(L, 1);
    }
    ksr_module_table(L, 1, "x");
    lua_pushcfunction(L, ksr_x_exit);
    lua_setfield(L, -2, "exit");
    lua_pushcfunction(L, ksr_x_drop);
    lua_setfield(L, -2, "drop");
    lua_pushcfunction(L, ksr_x_modf);
    lua_setfield(L, -2, "modf");
    lua_pushcfunction(L, ksr_x_probe);
    lua_setfield(L, -2, "probe");
    lua_pop(L, 1);
    lua_pushvalue(L, 1);
    lua_setglobal(L, "KSR");
    lua_pushliteral(L, "2.0");
    lua_setglobal(L, "KSRVERSION");
    /* package.loaded.KSR, so tracebacks name functions KSR.module.name */
    if (lua_getglobal(L, "package") == LUA_TTABLE) {
        if (lua_getfield(L, -1, "loaded") == LUA_TTABLE) {
            lua_pushvalue(L, 1);
            lua_setfield(L, -2, "KSR");
        }
    }
    return 0;
}

int ksr_setup_exports(lua_State *L, const ksr_export_desc *descs, int count) {
    lua_pushcfunction(L, ksr_setup_exports_k);
    lua_pushlightuserdata(L, (void *)descs);
    lua_pushinteger(L, count);
    return lua_pcall(L, 2, 0, 0);
}

/* ---- Running code ------------------------------------------------------------------------ */

int ksr_is_exit(const char *msg, size_t len) {
    const size_t n = sizeof(KSR_EXIT_STRING) - 1;
    if (msg == NULL || len < n || memcmp(msg + len - n, KSR_EXIT_STRING, n) != 0) return 0;
    if (len == n) return 1;
    /* "file:line: ~~ksr~exit~~": error() at level 1, or coroutine.wrap re-raising in Lua 5.4
     * (Lua 5.1, which Kamailio scripts were written for, passed the message through unchanged) */
    return len >= n + 2 && msg[len - n - 1] == ' ' && msg[len - n - 2] == ':';
}

int ksr_msgh(lua_State *L) {
    const char *msg;
    int t = lua_type(L, 1);
    if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        size_t len;
        msg = lua_tolstring(L, 1, &len);
        if (ksr_is_exit(msg, len)) return 1;
    } else if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
        msg = lua_tostring(L, -1);
    } else {
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int ksr_dochunk(lua_State *L, const char *buf, size_t len, const char *chunkname) {
    ksr_host *h = ksr_host_of(L);
    int base = lua_gettop(L);
    lua_pushcfunction(L, ksr_msgh);
    int st = luaL_loadbufferx(L, buf, len, chunkname, "t");
    if (st == LUA_OK) {
        ksr_arm(L, h);
        st = lua_pcall(L, 0, 0, base + 1);
        ksr_disarm(L, h);
    }
    lua_rotate(L, base + 1, -1); /* drop the handler, keep an error message on top */
    lua_pop(L, 1);
    return st;
}

static int ksr_ref_string_k(lua_State *L) {
    const char *s = (const char *)lua_touserdata(L, 1);
    size_t n = (size_t)lua_tointeger(L, 2);
    lua_pushlstring(L, s, n);
    lua_pushinteger(L, luaL_ref(L, LUA_REGISTRYINDEX));
    return 1;
}

int ksr_ref_string(lua_State *L, const char *s, size_t len) {
    lua_pushcfunction(L, ksr_ref_string_k);
    lua_pushlightuserdata(L, (void *)s);
    lua_pushinteger(L, (lua_Integer)len);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    int ref = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return ref;
}

/* Calls the function at 1 with a string built from (lightuserdata 2, length 3). */
static int ksr_call_with_arg_k(lua_State *L) {
    const char *s = (const char *)lua_touserdata(L, 2);
    size_t n = (size_t)lua_tointeger(L, 3);
    lua_settop(L, 1);
    lua_pushlstring(L, s, n);
    lua_call(L, 1, 0);
    return 0;
}

int ksr_run_callback(lua_State *L, int nameref, const char *arg, size_t arglen) {
    ksr_host *h = ksr_host_of(L);
    int base = lua_gettop(L);
    lua_pushcfunction(L, ksr_msgh);                     /* base+1 */
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS); /* base+2: no allocation, no metamethod */
    lua_rawgeti(L, LUA_REGISTRYINDEX, nameref);
    if (lua_rawget(L, base + 2) != LUA_TFUNCTION) {
        lua_settop(L, base);
        return -1;
    }
    lua_rotate(L, base + 2, -1); /* msgh, fn, globals */
    lua_pop(L, 1);
    int st;
    /* A callback run from inside a KSR call of a running callback (a branch route during t_relay)
     * shares the outer callback's budget: re-arming would hand the outer one a fresh budget. */
    int nested = h->armed;
    if (!nested) ksr_arm(L, h);
    if (arg == NULL) {
        st = lua_pcall(L, 0, 0, base + 1);
    } else {
        /* push the argument inside the pcall: creating a string may fail for lack of memory */
        lua_pushcfunction(L, ksr_call_with_arg_k);
        lua_rotate(L, base + 2, 1); /* msgh, k, fn */
        lua_pushlightuserdata(L, (void *)arg);
        lua_pushinteger(L, (lua_Integer)arglen);
        st = lua_pcall(L, 3, 0, base + 1);
    }
    if (!nested) ksr_disarm(L, h);
    lua_rotate(L, base + 1, -1);
    lua_pop(L, 1);
    return st;
}

void ksr_push_loaded_files(lua_State *L) { lua_rawgetp(L, LUA_REGISTRYINDEX, &ksr_files_key); }

/* ---- Route coroutines (async_io) --------------------------------------------------------- */

/* 1: name ref, 2: argument (light userdata or NULL), 3: its length. Returns the ref, or nothing
 * when the global is not a function. */
static int ksr_co_new_k(lua_State *L) {
    int nameref = (int)lua_tointeger(L, 1);
    const char *arg = (const char *)lua_touserdata(L, 2);
    size_t arglen = (size_t)lua_tointeger(L, 3);
    lua_State *co = lua_newthread(L);                      /* 4 */
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);    /* 5 */
    lua_rawgeti(L, LUA_REGISTRYINDEX, nameref);
    if (lua_rawget(L, 5) != LUA_TFUNCTION) return 0;
    lua_xmove(L, co, 1); /* the function */
    if (arg != NULL) {
        lua_pushlstring(L, arg, arglen);
        lua_xmove(L, co, 1);
    }
    lua_pushvalue(L, 4);
    lua_pushinteger(L, luaL_ref(L, LUA_REGISTRYINDEX));
    return 1;
}

int ksr_co_new(lua_State *L, int nameref, const char *arg, size_t arglen) {
    ksr_host *h = ksr_host_of(L);
    if (arg == NULL && h->co_spare > 0) {
        /* The spare (a coroutine that ended, reset: status OK, empty stack) starts the route: no new
         * thread, no registry slot. Nothing here allocates or raises (raw gets, xmove of one value
         * onto an empty stack). */
        int ref = h->co_spare;
        int base = lua_gettop(L);
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        lua_State *co = lua_tothread(L, -1);
        lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
        lua_rawgeti(L, LUA_REGISTRYINDEX, nameref);
        int t = lua_rawget(L, -2);
        if (co == NULL || lua_status(co) != LUA_OK || lua_gettop(co) != 0) {
            lua_settop(L, base);
            h->co_spare = 0;
            luaL_unref(L, LUA_REGISTRYINDEX, ref);
        } else if (t != LUA_TFUNCTION) {
            lua_settop(L, base);
            return LUA_NOREF;
        } else {
            lua_xmove(L, co, 1);
            lua_settop(L, base);
            h->co_spare = 0;
            return ref;
        }
    }
    int base = lua_gettop(L);
    lua_pushcfunction(L, ksr_co_new_k);
    lua_pushinteger(L, nameref);
    lua_pushlightuserdata(L, (void *)arg);
    lua_pushinteger(L, (lua_Integer)arglen);
    int ref = LUA_REFNIL;
    if (lua_pcall(L, 3, 1, 0) == LUA_OK) ref = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : LUA_NOREF;
    lua_settop(L, base);
    return ref;
}

/* The message handler of a coroutine that failed: 1 = the coroutine. Moves its error value over and
 * adds the coroutine's traceback (the exit sentinel stays as it is). */
static int ksr_co_error_k(lua_State *L) {
    lua_State *co = lua_tothread(L, 1);
    const char *msg;
    if (co == NULL || lua_gettop(co) < 1) {
        lua_pushliteral(L, "unknown error");
        return 1;
    }
    lua_xmove(co, L, 1); /* 2 */
    int t = lua_type(L, 2);
    if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        size_t len;
        msg = lua_tolstring(L, 2, &len);
        if (ksr_is_exit(msg, len)) return 1;
    } else if (luaL_callmeta(L, 2, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
        msg = lua_tostring(L, -1);
    } else {
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 2));
    }
    luaL_traceback(L, co, msg, 0);
    return 1;
}

int ksr_co_resume(lua_State *L, int ref) {
    ksr_host *h = ksr_host_of(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_State *co = lua_tothread(L, -1);
    lua_pop(L, 1);
    if (co == NULL) {
        lua_pushliteral(L, "not a coroutine");
        return LUA_ERRRUN;
    }
    int nargs = lua_status(co) == LUA_YIELD ? 0 : lua_gettop(co) - 1;
    lua_State *outer = h->co;
    h->co = co;
    ksr_arm(L, h);
    int nres = 0;
    int st = lua_resume(co, L, nargs, &nres);
    if (h->budget_hit) lua_sethook(co, ksr_hook, LUA_MASKCOUNT, KSR_HOOK_STEP);
    ksr_disarm(L, h);
    h->co = outer;
    if (st == LUA_YIELD) {
        lua_pop(co, nres);
        return LUA_YIELD;
    }
    if (st == LUA_OK) {
        lua_settop(co, 0);
        return LUA_OK;
    }
    lua_pushcfunction(L, ksr_co_error_k);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pcall(L, 1, 1, 0); /* on failure (memory) its own message is left */
    return st;
}

void ksr_co_release(lua_State *L, int ref) {
    if (ref > 0) luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

void ksr_co_recycle(lua_State *L, int ref) {
    ksr_host *h = ksr_host_of(L);
    if (ref <= 0) return;
    if (h->co_spare > 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_State *co = lua_tothread(L, -1);
    lua_pop(L, 1);
    /* A coroutine that ended with an error (or KSR.x.exit) is dead until reset: lua_resetthread
     * unwinds it (it returns the old error status; the thread's own status is then OK). */
    if (co != NULL && lua_status(co) != LUA_OK) lua_resetthread(co);
    if (co == NULL || lua_status(co) != LUA_OK) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return;
    }
    lua_settop(co, 0);
    h->co_spare = ref;
}
