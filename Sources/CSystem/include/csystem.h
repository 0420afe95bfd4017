#ifndef CSYSTEM_H
#define CSYSTEM_H

/* System calls and constants that Swift's Glibc module does not declare (they need _GNU_SOURCE),
 * plus small helpers whose memory layout we control. The .c file defines _GNU_SOURCE; this header
 * stays free of GNU-only types so Swift can import it. */

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* MARK: recvmmsg / sendmmsg batches */

/* A preallocated batch of datagram slots for recvmmsg/sendmmsg: `capacity` slots, each with its own
 * buffer of `buffer_size` bytes, a sockaddr_storage and (internally) an iovec and mmsghdr. Created
 * once per worker; receiving and sending never allocate. Opaque: use the accessors below. */
typedef struct st_mmsg_batch st_mmsg_batch;

/* Allocates a batch; NULL if out of memory or capacity/buffer_size is 0. */
st_mmsg_batch *st_batch_create(unsigned int capacity, size_t buffer_size);
void st_batch_destroy(st_mmsg_batch *b);
unsigned int st_batch_capacity(const st_mmsg_batch *b);
size_t st_batch_buffer_size(const st_mmsg_batch *b);

/* Receives up to `capacity` datagrams with one recvmmsg. If timeout_ms >= 0, first waits with poll
 * for at most timeout_ms (0 = do not wait); -1 = block. Returns the number received (> 0), 0 on
 * timeout or EINTR, or -errno. Truncated datagrams are flagged (st_batch_truncated). */
int st_batch_recv(int fd, st_mmsg_batch *b, int timeout_ms);
/* Takes the datagrams queued on fd (up to `capacity`) without waiting: the number received, 0 if
 * none was queued, or -errno. */
int st_batch_recv_queued(int fd, st_mmsg_batch *b);

/* Slot i's buffer (buffer_size bytes). */
unsigned char *st_batch_buffer(st_mmsg_batch *b, unsigned int i);
/* Bytes received into slot i by the last st_batch_recv. */
unsigned int st_batch_length(const st_mmsg_batch *b, unsigned int i);
/* 1 if the datagram in slot i did not fit the buffer (MSG_TRUNC). */
int st_batch_truncated(const st_mmsg_batch *b, unsigned int i);
/* Slot i's peer address (source after receive; destination for send). */
const struct sockaddr *st_batch_address(const st_mmsg_batch *b, unsigned int i);
socklen_t st_batch_address_length(const st_mmsg_batch *b, unsigned int i);

/* Prepares slot i for sending: `length` bytes already written into st_batch_buffer(b, i), to the
 * given destination. Returns 0, or -EINVAL if length or the address does not fit. */
int st_batch_set_send(st_mmsg_batch *b, unsigned int i, size_t length, const struct sockaddr *to, socklen_t to_len);

/* Sends slots [first, first+count) with sendmmsg (retrying on EINTR). Returns the number of
 * datagrams the kernel took (may be fewer than count), or -errno if none was sent. */
int st_batch_send(int fd, st_mmsg_batch *b, unsigned int first, unsigned int count);

/* The local (destination) address of datagram i, from IP_PKTINFO / IPV6_PKTINFO (enable them with
 * st_set_pktinfo). Writes a sockaddr_in/sockaddr_in6 with the given port into *out; returns its
 * length, or 0 if the datagram carried no packet info. */
int st_batch_local_address(const st_mmsg_batch *b, unsigned int i, void *out, unsigned int port_host_order);

/* MARK: Socket options */

/* Asks for IP_PKTINFO (family AF_INET) or IPV6_RECVPKTINFO (AF_INET6) on received datagrams. 0 or -errno. */
int st_set_pktinfo(int fd, int family);

int st_set_reuseport(int fd, int on);   /* 0 or -errno */
int st_set_rcvbuf(int fd, int bytes);   /* 0 or -errno */
int st_set_sndbuf(int fd, int bytes);   /* 0 or -errno */
int st_get_rcvbuf(int fd);              /* bytes (kernel-doubled) or -errno */
int st_get_sndbuf(int fd);              /* bytes (kernel-doubled) or -errno */
/* Creates a non-blocking-free (blocking), close-on-exec datagram socket; fd or -errno. */
int st_udp_socket(int family);
/* For IPv6 sockets: IPV6_V6ONLY on/off. 0 or -errno. */
int st_set_v6only(int fd, int on);
int st_set_reuseaddr(int fd, int on);  /* 0 or -errno */
/* Joins the multicast group (4 or 16 bytes, network order) on interface ifindex (0: any) and sets
 * IP_MULTICAST_LOOP / IP_MULTICAST_TTL (ttl < 0: left as is). 0 or -errno. */
int st_mcast_join(int fd, int family, const void *group, unsigned int ifindex, int loop, int ttl);

/* MARK: Threads, files, misc */

/* Names the calling thread (at most 15 bytes are kept). 0 or an errno value. */
int st_set_thread_name(const char *name);
/* Makes stdout unbuffered (mode 0), line-buffered (1) or fully buffered (2). */
void st_stdout_buffering(int mode);
/* Writes the text for errno value `err` into buf (NUL-terminated); returns buf. */
const char *st_strerror(int err, char *buf, size_t len);

/* An eventfd used to wake a poll loop: create (fd or -errno), signal, drain. */
int st_eventfd_create(void);
int st_eventfd_signal(int fd);
void st_eventfd_drain(int fd);
/* A worker's wait set: an epoll instance with `shared_fd` (a socket other threads wait on too) added
 * with EPOLLEXCLUSIVE, so that a datagram wakes one idle waiter instead of all of them, and `own_fd`
 * (this thread's eventfd) added normally. Either may be -1. Returns the epoll fd or -errno. */
int st_waitset_create(int shared_fd, int own_fd);
/* Waits on a wait set up to timeout_ms (-1: forever): a bit mask (1: shared_fd readable, 2: own_fd
 * readable), 0 on timeout or EINTR, or -errno. */
int st_waitset_wait(int epfd, int timeout_ms);
/* Adds (watch != 0, with EPOLLEXCLUSIVE) or removes `shared_fd` from a wait set. 0 or -errno. */
int st_waitset_watch_shared(int epfd, int shared_fd, int watch);

/* Returns freed heap memory to the kernel (glibc malloc_trim(0)); 1 if some was released. */
int st_malloc_trim(void);

/* glibc mallopt(M_ARENA_MAX, n): at most n heap arenas. 1 on success. */
int st_malloc_arena_max(int n);

/* inotify_init1(IN_NONBLOCK | IN_CLOEXEC): fd or -errno. */
int st_inotify_init(void);

/* MARK: DNS helpers */

/* The smallest TTL among the answer records of a DNS reply, or -1 if it has none / is malformed. */
long st_dns_min_answer_ttl(const unsigned char *msg, int len);

#endif
