/* The SSE load generator of loadtest/bench_api.py, in C so that the clients cost the machine
 * as little as a client can: one thread, epoll, one read per wakeup.
 *
 *   sse_load clients PORT PATH TOKEN N OUT
 *       Opens N connections to 127.0.0.1:PORT, each `GET PATH` with `Authorization: Bearer
 *       TOKEN`, in waves of 500 (a connection that fails before its response head is opened
 *       again, at most 3 times in all, each time said on stderr). Prints "connected\n" once
 *       every response head has arrived. Then, on stdin: "start" begins recording; "stop"
 *       writes what it recorded to the file OUT, prints "done COUNT CLOSED\n" (CLOSED: the
 *       streams the server ended) and exits. It records, for each event each client
 *       received, three native float64: the event's `"bench_sent": SECONDS` stamp
 *       (CLOCK_REALTIME, as Python's time.time()), then in ms after it: when the client's
 *       kernel received the bytes (SO_TIMESTAMPNS: on loopback, the moment the server's write
 *       delivered them), and when this program read them.
 *   sse_load serve PORT
 *       The generator's ceiling: a server with nothing behind it. It answers each request with
 *       a chunked event-stream head, prints "ready\n", and on each "go" line on stdin writes one
 *       stamped event to every connection, one after another (a client that went is skipped).
 *       It exits at the end of stdin.
 *
 * A failure (a response other than 200, a connection failing a third time) prints one line on
 * stderr and exits 1. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 16384
#define WAVE 500

static void die(const char *what) {
    fprintf(stderr, "sse_load: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(1);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void nonblocking(int fd) {
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
}

/* A line from stdin (fd 0, non-blocking), or NULL if none is complete yet; "" at its end. */
static char *stdin_line(void) {
    static char line[256];
    static size_t have;
    for (;;) {
        char *nl = memchr(line, '\n', have);
        if (nl) {
            static char out[256];
            size_t n = (size_t)(nl - line);
            memcpy(out, line, n);
            out[n] = 0;
            memmove(line, nl + 1, have - n - 1);
            have -= n + 1;
            return out;
        }
        if (have == sizeof line) die("stdin line too long");
        ssize_t r = read(0, line + have, sizeof line - have);
        if (r == 0) return "";
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return NULL;
            die("read stdin");
        }
        have += (size_t)r;
    }
}

struct conn {
    int fd;
    int connected; /* the TCP connection is up and the request written */
    int head;      /* the response head has arrived */
    int tries;     /* connections opened for it */
    size_t len;
    char buf[BUF];
};

static double *lat;
static size_t nlat, caplat;

static void record(double sent, double arrived, double now) {
    if (nlat + 3 > caplat) {
        caplat = caplat ? caplat * 2 : 1 << 16;
        lat = realloc(lat, caplat * sizeof *lat);
        if (!lat) die("realloc");
    }
    lat[nlat++] = sent;
    lat[nlat++] = (arrived - sent) * 1000.0;
    lat[nlat++] = (now - sent) * 1000.0;
}

/* Take the complete events (up to the last blank line) out of c->buf, recording each stamp. */
static void events(struct conn *c, double arrived, double now, int recording) {
    static const char key[] = "\"bench_sent\":";
    char *end = NULL;
    for (char *p = c->buf; (p = memmem(p, c->len - (size_t)(p - c->buf), "\n\n", 2)); p += 2) end = p + 2;
    if (!end) return;
    if (recording) {
        for (char *p = c->buf; (p = memmem(p, (size_t)(end - p), key, sizeof key - 1)); ) {
            p += sizeof key - 1;
            char *q;
            double sent = strtod(p, &q);
            if (q != p) record(sent, arrived, now);
            p = q > p ? q : p + 1;
        }
    }
    c->len -= (size_t)(end - c->buf);
    memmove(c->buf, end, c->len);
}

/* Read what is there into c->buf; *arrived is when the kernel received it (SO_TIMESTAMPNS). */
static ssize_t receive(struct conn *c, double *arrived) {
    union {
        char buf[CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = c->buf + c->len, .iov_len = BUF - c->len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    ssize_t r = recvmsg(c->fd, &msg, 0);
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); r > 0 && cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec t;
            memcpy(&t, CMSG_DATA(cm), sizeof t);
            *arrived = (double)t.tv_sec + (double)t.tv_nsec / 1e9;
        }
    }
    return r;
}

/* Open (or open again) a client's connection: non-blocking connect, then its request once
 * writable. A connection that fails before its response head is tried again, as a client
 * would, at most TRIES times in all; each retry is told on stderr. */
#define TRIES 3

static void open_conn(struct conn *c, int ep, const struct sockaddr_in *addr, const char *why) {
    if (c->tries) {
        if (c->tries >= TRIES) die(why);
        fprintf(stderr, "sse_load: %s: %s; connecting again\n", why, errno ? strerror(errno) : "closed");
        close(c->fd);
    }
    c->tries++;
    c->connected = 0;
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    if (setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0) die("SO_TIMESTAMPNS");
    if (connect(c->fd, (const struct sockaddr *)addr, sizeof *addr) < 0 && errno != EINPROGRESS) die("connect");
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
}

static int clients(int port, const char *path, const char *token, int n, const char *out) {
    char request[4096];
    int rlen = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n",
                        path, token);
    if (rlen <= 0 || rlen >= (int)sizeof request) die("request too long");
    struct conn *conns = calloc((size_t)n, sizeof *conns);
    if (!conns) die("calloc");
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    nonblocking(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) < 0) die("epoll_ctl stdin");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    struct epoll_event ready[1024];
    int opened = 0, heads = 0, recording = 0, announced = 0, closed = 0;
    double wave_at = 0;
    for (;;) {
        if (opened < n && now_s() - wave_at >= 0.05) { /* the next wave, as real clients come */
            wave_at = now_s();
            for (int k = 0; k < WAVE && opened < n; k++, opened++) open_conn(&conns[opened], ep, &addr, "connect");
        }
        if (!announced && heads == n) {
            printf("connected\n");
            fflush(stdout);
            announced = 1;
        }
        int k = epoll_wait(ep, ready, 1024, opened < n ? 10 : -1);
        if (k < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        double now = now_s();
        for (int i = 0; i < k; i++) {
            struct conn *c = ready[i].data.ptr;
            if (!c) { /* stdin */
                char *line;
                while ((line = stdin_line())) {
                    if (!strcmp(line, "start")) {
                        nlat = 0;
                        recording = 1;
                    } else if (!strcmp(line, "stop") || !*line) {
                        FILE *f = fopen(out, "wb");
                        if (!f || fwrite(lat, sizeof *lat, nlat, f) != nlat || fclose(f)) die("write latencies");
                        printf("done %zu %d\n", nlat / 3, closed);
                        fflush(stdout);
                        return 0;
                    }
                }
                continue;
            }
            if (!c->connected) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) {
                    errno = err;
                    open_conn(c, ep, &addr, "connect");
                    continue;
                }
                if (write(c->fd, request, (size_t)rlen) != rlen) {
                    open_conn(c, ep, &addr, "write request");
                    continue;
                }
                c->connected = 1;
                ev.events = EPOLLIN;
                ev.data.ptr = c;
                if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
                continue;
            }
            double arrived = now;
            ssize_t r = receive(c, &arrived);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
                if (!c->head) { /* before its head: the stream was never opened */
                    errno = r ? errno : 0;
                    open_conn(c, ep, &addr, "the server closed a connection before answering");
                    continue;
                }
                if (r < 0 && errno != ECONNRESET) die("read");
                close(c->fd); /* the server ended the stream (a slow client dropped): counted */
                c->fd = -1;
                closed++;
                continue;
            }
            c->len += (size_t)r;
            if (!c->head) {
                char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
                if (!end) {
                    if (c->len == BUF) {
                        errno = 0;
                        die("a response head larger than the buffer");
                    }
                    continue;
                }
                if (memcmp(c->buf, "HTTP/1.1 200", 12)) {
                    fprintf(stderr, "sse_load: a stream was refused: %.*s\n", (int)strcspn(c->buf, "\r"), c->buf);
                    exit(1);
                }
                c->head = 1;
                heads++;
                end += 4;
                c->len -= (size_t)(end - c->buf);
                memmove(c->buf, end, c->len);
            }
            events(c, arrived, now, recording);
            if (c->len == BUF) {
                errno = 0;
                die("an event larger than the buffer");
            }
        }
    }
}

static int serve(int port) {
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0) die("socket");
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(ls, 4096) < 0) die("listen");
    nonblocking(ls);
    nonblocking(0);
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) < 0) die("epoll_ctl");
    ev.data.fd = 0;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) < 0) die("epoll_ctl stdin");
    static const char head[] = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    int *streams = NULL, nstreams = 0, cap = 0;
    printf("ready\n");
    fflush(stdout);
    struct epoll_event ready[1024];
    for (;;) {
        int k = epoll_wait(ep, ready, 1024, -1);
        if (k < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < k; i++) {
            int fd = ready[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    ev.data.fd = c;
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0) die("epoll_ctl");
                }
            } else if (fd == 0) {
                char *line;
                while ((line = stdin_line())) {
                    if (!*line) return 0;
                    if (strcmp(line, "go")) continue;
                    char event[128], chunk[160];
                    int elen = snprintf(event, sizeof event, "data: {\"bench_sent\": %.6f}\n\n", now_s());
                    int clen = snprintf(chunk, sizeof chunk, "%x\r\n%s\r\n", elen, event);
                    for (int s = 0; s < nstreams; s++) {
                        if (streams[s] < 0 || write(streams[s], chunk, (size_t)clen) == clen) continue;
                        if (errno != EPIPE && errno != ECONNRESET) die("write event");
                        close(streams[s]); /* that client went */
                        streams[s] = -1;
                    }
                }
            } else { /* a request: its head is read whole or not at all here (they are small) */
                char req[4096];
                ssize_t r = read(fd, req, sizeof req);
                if (r <= 0) {
                    close(fd);
                    continue;
                }
                if (!memmem(req, (size_t)r, "\r\n\r\n", 4)) die("a request head in pieces");
                if (write(fd, head, sizeof head - 1) != (ssize_t)(sizeof head - 1)) die("write head");
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                if (nstreams == cap) {
                    cap = cap ? cap * 2 : 1024;
                    streams = realloc(streams, (size_t)cap * sizeof *streams);
                    if (!streams) die("realloc");
                }
                streams[nstreams++] = fd;
            }
        }
    }
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN); /* a write to a closed socket fails with EPIPE instead */
    if (argc == 7 && !strcmp(argv[1], "clients")) return clients(atoi(argv[2]), argv[3], argv[4], atoi(argv[5]), argv[6]);
    if (argc == 3 && !strcmp(argv[1], "serve")) return serve(atoi(argv[2]));
    fprintf(stderr, "usage: sse_load clients PORT PATH TOKEN N OUT | sse_load serve PORT\n");
    return 2;
}
