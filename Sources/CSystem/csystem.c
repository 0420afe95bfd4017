#define _GNU_SOURCE
#include "csystem.h"

#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/uio.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

/* Room for one IPv4 or IPv6 packet-info control message per slot. */
#define ST_CONTROL_SIZE 64
_Static_assert(CMSG_SPACE(sizeof(struct in6_pktinfo)) <= ST_CONTROL_SIZE, "control buffer too small");

struct st_mmsg_batch {
    unsigned int capacity;
    size_t buffer_size;
    struct mmsghdr *msgs;
    struct iovec *iovs;
    struct sockaddr_storage *addrs;
    unsigned char *buffers;
    unsigned char *controls;
};

st_mmsg_batch *st_batch_create(unsigned int capacity, size_t buffer_size) {
    if (capacity == 0 || buffer_size == 0) return NULL;
    st_mmsg_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->capacity = capacity;
    b->buffer_size = buffer_size;
    b->msgs = calloc(capacity, sizeof *b->msgs);
    b->iovs = calloc(capacity, sizeof *b->iovs);
    b->addrs = calloc(capacity, sizeof *b->addrs);
    b->buffers = malloc((size_t)capacity * buffer_size);
    b->controls = calloc(capacity, ST_CONTROL_SIZE);
    if (!b->msgs || !b->iovs || !b->addrs || !b->buffers || !b->controls) {
        st_batch_destroy(b);
        return NULL;
    }
    for (unsigned int i = 0; i < capacity; i++) {
        b->iovs[i].iov_base = b->buffers + (size_t)i * buffer_size;
        b->iovs[i].iov_len = buffer_size;
        b->msgs[i].msg_hdr.msg_iov = &b->iovs[i];
        b->msgs[i].msg_hdr.msg_iovlen = 1;
        b->msgs[i].msg_hdr.msg_name = &b->addrs[i];
        b->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
    }
    return b;
}

void st_batch_destroy(st_mmsg_batch *b) {
    if (!b) return;
    free(b->msgs);
    free(b->iovs);
    free(b->addrs);
    free(b->buffers);
    free(b->controls);
    free(b);
}

unsigned int st_batch_capacity(const st_mmsg_batch *b) { return b->capacity; }
size_t st_batch_buffer_size(const st_mmsg_batch *b) { return b->buffer_size; }

static int batch_recvmmsg(int fd, st_mmsg_batch *b, int flags);

int st_batch_recv(int fd, st_mmsg_batch *b, int timeout_ms) {
    int flags = 0;
    if (timeout_ms >= 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, timeout_ms);
        if (r == 0) return 0;
        if (r < 0) return errno == EINTR ? 0 : -errno;
        if (p.revents & POLLNVAL) return -EBADF;
        flags = MSG_DONTWAIT;
    }
    return batch_recvmmsg(fd, b, flags);
}

int st_batch_recv_queued(int fd, st_mmsg_batch *b) { return batch_recvmmsg(fd, b, MSG_DONTWAIT); }

static int batch_recvmmsg(int fd, st_mmsg_batch *b, int flags) {
    for (unsigned int i = 0; i < b->capacity; i++) {
        b->iovs[i].iov_len = b->buffer_size;
        b->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        b->msgs[i].msg_hdr.msg_flags = 0;
        b->msgs[i].msg_hdr.msg_control = b->controls + (size_t)i * ST_CONTROL_SIZE;
        b->msgs[i].msg_hdr.msg_controllen = ST_CONTROL_SIZE;
        b->msgs[i].msg_len = 0;
    }
    /* MSG_WAITFORONE: block (if blocking) for the first datagram only, then take what is queued. */
    int n = recvmmsg(fd, b->msgs, b->capacity, flags | MSG_WAITFORONE, NULL);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return -errno;
    }
    return n;
}

unsigned char *st_batch_buffer(st_mmsg_batch *b, unsigned int i) { return b->buffers + (size_t)i * b->buffer_size; }
unsigned int st_batch_length(const st_mmsg_batch *b, unsigned int i) { return b->msgs[i].msg_len; }
int st_batch_truncated(const st_mmsg_batch *b, unsigned int i) { return (b->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0; }
const struct sockaddr *st_batch_address(const st_mmsg_batch *b, unsigned int i) {
    return (const struct sockaddr *)&b->addrs[i];
}
socklen_t st_batch_address_length(const st_mmsg_batch *b, unsigned int i) { return b->msgs[i].msg_hdr.msg_namelen; }

int st_batch_set_send(st_mmsg_batch *b, unsigned int i, size_t length, const struct sockaddr *to, socklen_t to_len) {
    if (i >= b->capacity || length > b->buffer_size || to_len > sizeof(struct sockaddr_storage)) return -EINVAL;
    memcpy(&b->addrs[i], to, to_len);
    b->msgs[i].msg_hdr.msg_namelen = to_len;
    b->msgs[i].msg_hdr.msg_flags = 0;
    b->msgs[i].msg_hdr.msg_control = NULL;
    b->msgs[i].msg_hdr.msg_controllen = 0;
    b->iovs[i].iov_len = length;
    b->msgs[i].msg_len = 0;
    return 0;
}

int st_batch_send(int fd, st_mmsg_batch *b, unsigned int first, unsigned int count) {
    if (first > b->capacity || count > b->capacity - first) return -EINVAL;
    if (count == 0) return 0;
    for (;;) {
        int n = sendmmsg(fd, b->msgs + first, count, 0);
        if (n >= 0) return n;
        if (errno != EINTR) return -errno;
    }
}

int st_batch_local_address(const st_mmsg_batch *b, unsigned int i, void *out, unsigned int port) {
    const struct msghdr *h = &b->msgs[i].msg_hdr;
    if (!h->msg_control || h->msg_controllen == 0) return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR((struct msghdr *)h, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof pi);
            struct sockaddr_in *sin = (struct sockaddr_in *)out;
            memset(sin, 0, sizeof *sin);
            sin->sin_family = AF_INET;
            sin->sin_port = htons((uint16_t)port);
            sin->sin_addr = pi.ipi_addr;
            return (int)sizeof *sin;
        }
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof pi);
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
            memset(sin6, 0, sizeof *sin6);
            sin6->sin6_family = AF_INET6;
            sin6->sin6_port = htons((uint16_t)port);
            sin6->sin6_addr = pi.ipi6_addr;
            return (int)sizeof *sin6;
        }
    }
    return 0;
}

static int set_int_opt(int fd, int level, int name, int value) {
    return setsockopt(fd, level, name, &value, sizeof value) == 0 ? 0 : -errno;
}
static int get_int_opt(int fd, int level, int name) {
    int v = 0;
    socklen_t l = sizeof v;
    return getsockopt(fd, level, name, &v, &l) == 0 ? v : -errno;
}

int st_set_reuseport(int fd, int on) { return set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, on ? 1 : 0); }
int st_set_rcvbuf(int fd, int bytes) { return set_int_opt(fd, SOL_SOCKET, SO_RCVBUF, bytes); }
int st_set_sndbuf(int fd, int bytes) { return set_int_opt(fd, SOL_SOCKET, SO_SNDBUF, bytes); }
int st_get_rcvbuf(int fd) { return get_int_opt(fd, SOL_SOCKET, SO_RCVBUF); }
int st_get_sndbuf(int fd) { return get_int_opt(fd, SOL_SOCKET, SO_SNDBUF); }
int st_set_pktinfo(int fd, int family) {
    if (family == AF_INET6) return set_int_opt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
    return set_int_opt(fd, IPPROTO_IP, IP_PKTINFO, 1);
}
int st_set_v6only(int fd, int on) { return set_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, on ? 1 : 0); }
int st_set_reuseaddr(int fd, int on) { return set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, on ? 1 : 0); }

int st_mcast_join(int fd, int family, const void *group, unsigned int ifindex, int loop, int ttl) {
    if (family == AF_INET6) {
        struct ipv6_mreq m;
        memset(&m, 0, sizeof(m));
        memcpy(&m.ipv6mr_multiaddr, group, 16);
        m.ipv6mr_interface = ifindex;
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &m, sizeof(m)) != 0) return -errno;
        int r = set_int_opt(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, loop ? 1 : 0);
        if (r != 0) return r;
        if (ttl >= 0) return set_int_opt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, ttl);
        return 0;
    }
    struct ip_mreqn m;
    memset(&m, 0, sizeof(m));
    memcpy(&m.imr_multiaddr, group, 4);
    m.imr_ifindex = (int)ifindex;
    if (setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof(m)) != 0) return -errno;
    unsigned char l = loop ? 1 : 0;
    if (setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &l, sizeof(l)) != 0) return -errno;
    if (ttl >= 0) {
        unsigned char t = (unsigned char)ttl;
        if (setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &t, sizeof(t)) != 0) return -errno;
    }
    return 0;
}

int st_udp_socket(int family) {
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP);
    return fd >= 0 ? fd : -errno;
}

int st_set_thread_name(const char *name) {
    char buf[16];
    strncpy(buf, name, sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    return pthread_setname_np(pthread_self(), buf);
}

void st_stdout_buffering(int mode) {
    int m = mode == 0 ? _IONBF : mode == 1 ? _IOLBF : _IOFBF;
    setvbuf(stdout, NULL, m, m == _IONBF ? 0 : BUFSIZ);
}

const char *st_strerror(int err, char *buf, size_t len) {
    if (len == 0) return buf;
    const char *s = strerror_r(err, buf, len); /* GNU variant: may return a static string */
    if (s != buf) {
        strncpy(buf, s, len - 1);
        buf[len - 1] = 0;
    }
    return buf;
}

int st_eventfd_create(void) {
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return fd >= 0 ? fd : -errno;
}
int st_eventfd_signal(int fd) {
    uint64_t one = 1;
    return write(fd, &one, sizeof one) == sizeof one ? 0 : -errno;
}
void st_eventfd_drain(int fd) {
    uint64_t v;
    while (read(fd, &v, sizeof v) == sizeof v) {}
}

int st_waitset_create(int shared_fd, int own_fd) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return -errno;
    struct epoll_event shared = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u32 = 1};
    struct epoll_event own = {.events = EPOLLIN, .data.u32 = 2};
    if ((shared_fd >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, shared_fd, &shared) < 0) ||
        (own_fd >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, own_fd, &own) < 0)) {
        int err = errno;
        close(ep);
        return -err;
    }
    return ep;
}

int st_waitset_wait(int epfd, int timeout_ms) {
    struct epoll_event ev[2];
    int n = epoll_wait(epfd, ev, 2, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    int mask = 0;
    for (int i = 0; i < n; i++) mask |= (int)ev[i].data.u32;
    return mask;
}

int st_waitset_watch_shared(int epfd, int shared_fd, int watch) {
    struct epoll_event shared = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u32 = 1};
    int r = epoll_ctl(epfd, watch ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, shared_fd, &shared);
    return r < 0 ? -errno : 0;
}

int st_malloc_trim(void) { return malloc_trim(0); }

int st_malloc_arena_max(int n) { return mallopt(M_ARENA_MAX, n); }

int st_inotify_init(void) {
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

/* Skips a (possibly compressed) domain name at offset p; returns the offset after it or -1. */
static int dns_skip_name(const unsigned char *m, int len, int p) {
    while (p < len) {
        unsigned char l = m[p];
        if (l == 0) return p + 1;
        if ((l & 0xC0) == 0xC0) return p + 2 <= len ? p + 2 : -1;
        if (l & 0xC0) return -1;
        p += 1 + l;
    }
    return -1;
}

long st_dns_min_answer_ttl(const unsigned char *m, int len) {
    if (!m || len < 12) return -1;
    int qd = (m[4] << 8) | m[5];
    int an = (m[6] << 8) | m[7];
    int p = 12;
    for (int i = 0; i < qd; i++) {
        p = dns_skip_name(m, len, p);
        if (p < 0 || p + 4 > len) return -1;
        p += 4;
    }
    long min = -1;
    for (int i = 0; i < an; i++) {
        p = dns_skip_name(m, len, p);
        if (p < 0 || p + 10 > len) return -1;
        unsigned long ttl = ((unsigned long)m[p + 4] << 24) | ((unsigned long)m[p + 5] << 16) |
                            ((unsigned long)m[p + 6] << 8) | m[p + 7];
        int rdlen = (m[p + 8] << 8) | m[p + 9];
        p += 10 + rdlen;
        if (p > len) return -1;
        if (ttl > 0x7FFFFFFFUL) ttl = 0; /* RFC 2181 §8 */
        if (min < 0 || (long)ttl < min) min = (long)ttl;
    }
    return min;
}
