#ifndef CLUA_SHIM_H
#define CLUA_SHIM_H
/*
 * CLuaShim: what Swift cannot import from Lua 5.4 (function-like macros, variadic functions), and
 * every piece of code that may raise a Lua error (lua_error / luaL_error long-jump). Swift code
 * never raises: it returns plain C data and this file turns it into Lua values or errors once the
 * Swift frame has returned.
 */
#include <stddef.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

/* ---- Macro wrappers ---------------------------------------------------------------------- */

static inline int ksr_pcall(lua_State *L, int nargs, int nres, int msgh) {
    return lua_pcallk(L, nargs, nres, msgh, 0, NULL);
}
static inline const char *ksr_tostring(lua_State *L, int idx, size_t *len) { return lua_tolstring(L, idx, len); }
static inline void ksr_pop(lua_State *L, int n) { lua_settop(L, -(n) - 1); }
static inline void ksr_newtable(lua_State *L) { lua_createtable(L, 0, 0); }
static inline int ksr_upvalueindex(int i) { return lua_upvalueindex(i); }
static inline int ksr_registryindex(void) { return LUA_REGISTRYINDEX; }
static inline void **ksr_extraspace(lua_State *L) { return (void **)lua_getextraspace(L); }
static inline int ksr_gc_count_kb(lua_State *L) { return lua_gc(L, LUA_GCCOUNT, 0); }
static inline int ksr_gc_collect(lua_State *L) { return lua_gc(L, LUA_GCCOLLECT, 0); }
static inline void ksr_remove(lua_State *L, int idx) { lua_rotate(L, idx, -1); lua_settop(L, -2); }

/* ---- Marshalling records (layout shared with StarlingKEMI.KemiArgs) ---------------------- */

/** One argument: 24 bytes (s at 0, len at 8, i at 16), exactly what KemiArgs reads. */
typedef struct ksr_param {
    const void *s;
    size_t len;
    long long i;
} ksr_param;

/** What the C side pushes after the Swift call. Decided in Swift from the export's return type. */
enum ksr_ret_kind {
    KSR_RET_NOTHING = 0, /* no Lua value (XVAL none) */
    KSR_RET_NIL = 1,
    KSR_RET_INT = 2,
    KSR_RET_BOOL = 3,
    KSR_RET_STR = 4,
    KSR_RET_FALSE = 5,
    KSR_RET_YIELD = 6, /* async_io: the call started a wait; the route coroutine yields (lua_yieldk) */
};

typedef struct ksr_ret {
    int kind;
    long long i;
    const char *s; /* must stay valid until the dispatcher has pushed it */
    size_t len;
} ksr_ret;

#define KSR_MAXPARAMS 6
#define KSR_EXIT_STRING "~~ksr~exit~~"

/** Log events the C side reports to Swift (no formatting in C). */
enum ksr_log_event {
    KSR_LOG_TOO_FEW_ARGS = 1, /* a = export index, b = arguments given */
    KSR_LOG_TOO_MANY_ARGS = 2,
};

/** Calls export `index` (ctx = ksr_host.ctx). Swift; never raises. `yieldable` is 1 when the call
 *  comes straight from the route coroutine being resumed and may yield (ret kind KSR_RET_YIELD). */
typedef void (*ksr_call_fn)(void *ctx, int index, const ksr_param *params, int nparams, ksr_ret *ret, int yieldable);
/** The result of a call that yielded, when its route is resumed. Swift; never raises. */
typedef void (*ksr_resumed_fn)(void *ctx, int index, ksr_ret *ret);
/** Reports a log event. Swift; never raises. */
typedef void (*ksr_log_fn)(void *ctx, int event, long long a, long long b);
/** KSR.x.drop: marks the context dropped. Swift; never raises. */
typedef void (*ksr_drop_fn)(void *ctx);
/** KSR.x.modf: params[0] is the function name, the rest string arguments. Returns the integer result. */
typedef long long (*ksr_modf_fn)(void *ctx, const ksr_param *params, int nparams);

/**
 * Per-state host record. Its address is stored in lua_getextraspace (copied into coroutines),
 * and it is the allocator's userdata. Owned by the Swift engine; lives as long as the state.
 */
typedef struct ksr_host {
    void *ctx;
    ksr_call_fn call;
    ksr_log_fn log;
    ksr_drop_fn drop;
    ksr_modf_fn modf;
    ksr_resumed_fn resumed;
    /* async_io: the route coroutine being resumed (NULL: none); only it may yield from a KSR call */
    lua_State *co;
    /* async_io: registry ref of a finished route coroutine kept for the next route (0: none) */
    int co_spare;
    /* instruction budget: checked every KSR_HOOK_STEP instructions while a callback runs */
    long long budget;
    long long remaining;
    int budget_hit;
    int armed;
    /* memory cap: bytes in use by this state and the limit (0 = none) */
    int mem_hit;
    size_t mem_used;
    size_t mem_limit;
} ksr_host;

#define KSR_HOOK_STEP 1000

/** Export description for ksr_setup_exports. */
typedef struct ksr_export_desc {
    const char *module; /* "" for KSR.<name> */
    const char *name;
    const char *sig;    /* one letter per param: s, i, l */
    int index;
} ksr_export_desc;

/** Creates a state whose allocator enforces host->mem_limit; extraspace = host. NULL on failure. */
lua_State *ksr_newstate(ksr_host *host);

/** luaL_openlibs, 5.1 compat globals, the file-recording searcher and package.path, in pcall.
 *  scriptdir may be NULL. On failure returns the status and leaves the error message on the stack. */
int ksr_setup_libs(lua_State *L, const char *scriptdir);

/** Builds KSR (with KSR.x and KSRVERSION) from the descriptors, in pcall (error left on stack). */
int ksr_setup_exports(lua_State *L, const ksr_export_desc *descs, int count);

/** The traceback message handler (keeps the exit sentinel unchanged). */
int ksr_msgh(lua_State *L);

/** Loads and runs a chunk (text only) with the message handler. Error message left on the stack. */
int ksr_dochunk(lua_State *L, const char *buf, size_t len, const char *chunkname);

/** Creates an interned string in the registry (in pcall) and returns its ref, or LUA_NOREF. */
int ksr_ref_string(lua_State *L, const char *s, size_t len);

/**
 * Runs a global callback. nameref is a registry ref to the name string. With arg != NULL the
 * string is passed as the only argument. Returns: -1 if the global is not a function (nothing
 * left on the stack), otherwise the pcall status; on error the message is left on the stack.
 * Arms the instruction budget before and disarms it after.
 */
int ksr_run_callback(lua_State *L, int nameref, const char *arg, size_t arglen);

/** 1 if the message is the exit sentinel, exactly or after a "file:line: " prefix. */
int ksr_is_exit(const char *msg, size_t len);

/** The list of files the `require` searcher loaded (registry table); pushes it. */
void ksr_push_loaded_files(lua_State *L);

/* ---- Route coroutines (async_io) ------------------------------------------------------------ */

/**
 * Creates a coroutine for the global callback (nameref as in ksr_run_callback) with an optional
 * string argument, anchored in the registry. Returns its registry ref, LUA_NOREF when the global is
 * not a function, or LUA_REFNIL when it could not be created (memory).
 */
int ksr_co_new(lua_State *L, int nameref, const char *arg, size_t arglen);

/**
 * Resumes (or starts) the coroutine `ref` under a fresh instruction budget. Returns LUA_YIELD
 * (waiting: a KSR call yielded, or the script called coroutine.yield itself), LUA_OK (finished), or
 * an error status with the message (with traceback, or the exit sentinel) left on L's stack.
 * The coroutine stays anchored until ksr_co_release.
 */
int ksr_co_resume(lua_State *L, int ref);

/** Drops the registry anchor of a coroutine (it is collected). */
void ksr_co_release(lua_State *L, int ref);

/**
 * A route coroutine that ended (ksr_co_resume returned anything but LUA_YIELD): it is reset and kept
 * for the next ksr_co_new (one spare per state), or released. Its ref must not be used afterwards.
 */
void ksr_co_recycle(lua_State *L, int ref);

/** Sets or clears the instruction-count hook. */
void ksr_set_budget_hook(lua_State *L, int on);

#endif
