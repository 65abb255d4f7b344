/*
 * uring.c - probe: a minimal L4 relay on io_uring (multishot accept,
 * connect, recv and send as submissions, one io_uring_enter per wake-up),
 * to measure whether batching the kernel entries beats an epoll relay on
 * small keep-alive requests. Not part of shoal: no timeouts, no
 * half-close, no retries, round robin only, sessions closed on any EOF.
 *
 *   apt-get install liburing-dev
 *   cc -O2 -o /tmp/uring-probe bench/probes/uring.c -luring
 *   taskset -c 1 /tmp/uring-probe LISTEN-PORT BACKEND-PORT...
 *
 * then bench/probes/measure.py against it, shoal and HAProxy (result in
 * docs/benchmarks.md).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXCONN	4096
#define BUFSZ	16384

enum op { OP_ACCEPT, OP_CONNECT, OP_RECV, OP_SEND, OP_CLOSE };

struct side {
	int	 fd;
	char	 buf[BUFSZ];	/* read from this side, going to the peer */
	int	 len, off;
};

struct conn {
	struct side	 s[2];	/* 0 client, 1 server */
	int		 inflight;
	int		 closing;
	int		 used;
};

static struct conn		 C[MAXCONN];
static struct io_uring		 ring;
static struct sockaddr_in	 backend[16];
static int			 nbackends, rr;

static uint64_t
ud(int op, int idx, int side)
{
	return (uint64_t)op << 32 | (uint64_t)idx << 1 | (uint64_t)side;
}

static struct io_uring_sqe *
sqe(void)
{
	struct io_uring_sqe *e = io_uring_get_sqe(&ring);

	if (e == NULL) {
		io_uring_submit(&ring);
		e = io_uring_get_sqe(&ring);
	}
	return e;
}

static void
post_recv(int i, int side)
{
	struct io_uring_sqe *e = sqe();

	io_uring_prep_recv(e, C[i].s[side].fd, C[i].s[side].buf, BUFSZ, 0);
	io_uring_sqe_set_data64(e, ud(OP_RECV, i, side));
	C[i].inflight++;
}

static void
post_send(int i, int side)	/* send side's bytes to its peer */
{
	struct side		*sd = &C[i].s[side];
	struct io_uring_sqe	*e = sqe();

	io_uring_prep_send(e, C[i].s[!side].fd, sd->buf + sd->off,
	    sd->len - sd->off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(e, ud(OP_SEND, i, side));
	C[i].inflight++;
}

static void
conn_close(int i)
{
	if (!C[i].closing) {
		C[i].closing = 1;
		/* Wake the pending recvs: they complete with an error. */
		shutdown(C[i].s[0].fd, SHUT_RDWR);
		shutdown(C[i].s[1].fd, SHUT_RDWR);
	}
	if (C[i].inflight == 0) {
		close(C[i].s[0].fd);
		close(C[i].s[1].fd);
		C[i].used = 0;
	}
}

int
main(int argc, char **argv)
{
	struct sockaddr_in	 sa = { .sin_family = AF_INET };
	int			 l, one = 1;

	if (argc < 3 || argc - 2 > 16) {
		fprintf(stderr, "usage: %s LISTEN-PORT BACKEND-PORT...\n",
		    argv[0]);
		return 2;
	}
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int k = 2; k < argc; k++) {
		backend[nbackends] = sa;
		backend[nbackends++].sin_port = htons(atoi(argv[k]));
	}
	sa.sin_port = htons(atoi(argv[1]));
	l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(l, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    listen(l, 1024) == -1) {
		perror("listen");
		return 1;
	}
	/* URING_DEFER=1: IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN (6.1+):
	 * completions are run only when we wait, no task-work interrupts. */
	unsigned flags = getenv("URING_DEFER") != NULL ?
	    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN : 0;

	if (io_uring_queue_init(4096, &ring, flags) < 0) {
		perror("io_uring_queue_init");
		return 1;
	}
	struct io_uring_sqe *first = sqe();

	io_uring_prep_multishot_accept(first, l, NULL, NULL, 0);
	io_uring_sqe_set_data64(first, ud(OP_ACCEPT, 0, 0));

	for (;;) {
		struct io_uring_cqe	*cqe;
		unsigned		 head, n = 0;

		io_uring_submit_and_wait(&ring, 1);
		io_uring_for_each_cqe(&ring, head, cqe) {
			uint64_t	 d = io_uring_cqe_get_data64(cqe);
			int		 op = (int)(d >> 32);
			int		 i = (int)((d & 0xffffffff) >> 1);
			int		 side = (int)(d & 1);
			int		 res = cqe->res;

			n++;
			if (op == OP_ACCEPT) {
				int s;

				if (!(cqe->flags & IORING_CQE_F_MORE)) {
					struct io_uring_sqe *e = sqe();

					io_uring_prep_multishot_accept(e, l,
					    NULL, NULL, 0);
					io_uring_sqe_set_data64(e,
					    ud(OP_ACCEPT, 0, 0));
				}
				if (res < 0)
					continue;
				if (res >= MAXCONN || C[res].used) {
					close(res);
					continue;
				}
				s = socket(AF_INET, SOCK_STREAM, 0);
				if (s < 0) {
					close(res);
					continue;
				}
				setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one,
				    sizeof(one));
				/* The client's fd indexes the session. */
				i = res;
				memset(&C[i], 0, sizeof(C[i]));
				C[i].used = 1;
				C[i].s[0].fd = res;
				C[i].s[1].fd = s;
				struct io_uring_sqe *e = sqe();
				io_uring_prep_connect(e, s,
				    (struct sockaddr *)&backend[rr++ %
				    nbackends], sizeof(backend[0]));
				io_uring_sqe_set_data64(e, ud(OP_CONNECT, i, 1));
				C[i].inflight++;
				continue;
			}
			C[i].inflight--;
			if (C[i].closing) {
				conn_close(i);
				continue;
			}
			switch (op) {
			case OP_CONNECT:
				if (res < 0) {
					conn_close(i);
					break;
				}
				post_recv(i, 0);
				post_recv(i, 1);
				break;
			case OP_RECV:
				if (res <= 0) {
					conn_close(i);
					break;
				}
				C[i].s[side].len = res;
				C[i].s[side].off = 0;
				post_send(i, side);
				break;
			case OP_SEND:
				if (res <= 0) {
					conn_close(i);
					break;
				}
				C[i].s[side].off += res;
				if (C[i].s[side].off < C[i].s[side].len)
					post_send(i, side);
				else
					post_recv(i, side);
				break;
			}
		}
		io_uring_cq_advance(&ring, n);
	}
}
