/* An LD_PRELOAD shim for wrk, built by bench/gateway.sh, for two rows wrk cannot do alone.
 *
 *   WRK_SHIM_NO_RESUME=1   wrk reconnects through SSL_clear, which keeps the TLS session,
 *                          so its next handshake resumes it (a ticket, under TLS 1.3). This
 *                          forgets the session after every SSL_clear: each connection pays
 *                          a full handshake (key exchange and certificate signature).
 *   WRK_SHIM_PROXY_V2=1    every TCP connection wrk opens starts with a PROXY v2 header
 *                          (PROXY, TCP4, source 198.51.100.7, destination the address wrk
 *                          connected to), sent in the same write as the first request.
 *
 * Nothing else in wrk changes. No OpenSSL headers are needed: the two SSL functions are
 * looked up at run time, and only when wrk calls them.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

typedef struct ssl_st SSL;

int SSL_clear(SSL *s) {
    static int (*real_clear)(SSL *);
    static int (*set_session)(SSL *, void *);
    if (!real_clear) {
        real_clear = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
        set_session = (int (*)(SSL *, void *))dlsym(RTLD_NEXT, "SSL_set_session");
    }
    int r = real_clear(s);
    if (getenv("WRK_SHIM_NO_RESUME") && set_session) {
        set_session(s, NULL);
    }
    return r;
}

#define MAX_FD 65536
/* The PROXY v2 header still owed on a descriptor (all zero: none). */
static unsigned char owed[MAX_FD][28];

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_connect)(int, const struct sockaddr *, socklen_t);
    if (!real_connect) {
        real_connect = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    }
    if (getenv("WRK_SHIM_PROXY_V2") && fd >= 0 && fd < MAX_FD && addr->sa_family == AF_INET) {
        const struct sockaddr_in *dst = (const struct sockaddr_in *)addr;
        static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                              0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
        static const unsigned char src[4] = {198, 51, 100, 7};
        unsigned char *h = owed[fd];
        uint16_t src_port = htons((uint16_t)(40000 + fd));
        memcpy(h, sig, 12);
        h[12] = 0x21; /* version 2, PROXY */
        h[13] = 0x11; /* TCP over IPv4 */
        h[14] = 0;
        h[15] = 12; /* addresses: 4 + 4 + 2 + 2 bytes */
        memcpy(h + 16, src, 4);
        memcpy(h + 20, &dst->sin_addr, 4);
        memcpy(h + 24, &src_port, 2);
        memcpy(h + 26, &dst->sin_port, 2);
    }
    return real_connect(fd, addr, len);
}

ssize_t write(int fd, const void *buf, size_t n) {
    static ssize_t (*real_write)(int, const void *, size_t);
    if (!real_write) {
        real_write = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    }
    if (fd >= 0 && fd < MAX_FD && owed[fd][12] == 0x21) {
        unsigned char joined[28 + 4096];
        size_t take = n < 4096 ? n : 4096;
        memcpy(joined, owed[fd], 28);
        memcpy(joined + 28, buf, take);
        ssize_t w = real_write(fd, joined, 28 + take);
        if (w < 0) {
            return w; /* EAGAIN: the header is still owed */
        }
        memset(owed[fd], 0, 28);
        /* A fresh socket takes a few hundred bytes whole; a shorter write would have cut
         * the header, and the connection is then useless anyway. */
        return w >= 28 ? w - 28 : -1;
    }
    return real_write(fd, buf, n);
}
