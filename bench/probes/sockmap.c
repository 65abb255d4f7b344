/*
 * sockmap.c - probe: a minimal L4 relay whose sessions are relayed inside
 * the kernel by a BPF sockhash and an SK_SKB verdict program (each
 * socket's data redirected to its peer's egress), to measure whether that
 * beats a user-space relay on small keep-alive requests. Not part of
 * shoal: no timeouts, no half-close, no byte counts, round robin only.
 *
 *   cc -O2 -o /tmp/sockmap-probe bench/probes/sockmap.c
 *   taskset -c 1 /tmp/sockmap-probe LISTEN-PORT BACKEND-PORT...   (root)
 *
 * then bench/probes/measure.py against it, shoal and HAProxy (see
 * docs/benchmarks.md for the result: less CPU in the relay process, more
 * on the machine, half the requests/s).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int bpf(int cmd, union bpf_attr *a) { return syscall(SYS_bpf, cmd, a, sizeof(*a)); }

static int map_create(int type, int ks, int vs, int n)
{
	union bpf_attr a; memset(&a, 0, sizeof(a));
	a.map_type = type; a.key_size = ks; a.value_size = vs; a.max_entries = n;
	return bpf(BPF_MAP_CREATE, &a);
}
static int map_update(int fd, void *k, void *v)
{
	union bpf_attr a; memset(&a, 0, sizeof(a));
	a.map_fd = fd; a.key = (uint64_t)(uintptr_t)k; a.value = (uint64_t)(uintptr_t)v; a.flags = BPF_ANY;
	return bpf(BPF_MAP_UPDATE_ELEM, &a);
}
static int map_delete(int fd, void *k)
{
	union bpf_attr a; memset(&a, 0, sizeof(a));
	a.map_fd = fd; a.key = (uint64_t)(uintptr_t)k;
	return bpf(BPF_MAP_DELETE_ELEM, &a);
}

#define INS(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })

static int load_prog(int peers, int sockhash)
{
	struct bpf_insn p[] = {
		INS(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0),          /* r6 = ctx */
		INS(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_get_socket_cookie),
		INS(BPF_STX | BPF_MEM | BPF_DW, 10, 0, -8, 0),          /* *(fp-8) = cookie */
		INS(BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, peers),
		INS(0, 0, 0, 0, 0),
		INS(BPF_ALU64 | BPF_MOV | BPF_X, 2, 10, 0, 0),
		INS(BPF_ALU64 | BPF_ADD | BPF_K, 2, 0, 0, -8),
		INS(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem),
		INS(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 7, 0),            /* if !r0 goto pass */
		INS(BPF_ALU64 | BPF_MOV | BPF_X, 3, 0, 0, 0),          /* r3 = &peer cookie */
		INS(BPF_ALU64 | BPF_MOV | BPF_X, 1, 6, 0, 0),
		INS(BPF_LD | BPF_DW | BPF_IMM, 2, BPF_PSEUDO_MAP_FD, 0, sockhash),
		INS(0, 0, 0, 0, 0),
		INS(BPF_ALU64 | BPF_MOV | BPF_K, 4, 0, 0, 0),          /* flags 0: egress */
		INS(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_redirect_hash),
		INS(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
		INS(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, SK_PASS),     /* pass: */
		INS(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};
	static char log[65536];
	union bpf_attr a; memset(&a, 0, sizeof(a));
	a.prog_type = BPF_PROG_TYPE_SK_SKB;
	a.insns = (uint64_t)(uintptr_t)p; a.insn_cnt = sizeof(p) / sizeof(p[0]);
	a.license = (uint64_t)(uintptr_t)"GPL";
	a.log_buf = (uint64_t)(uintptr_t)log; a.log_size = sizeof(log); a.log_level = 1;
	int fd = bpf(BPF_PROG_LOAD, &a);
	if (fd < 0) { fprintf(stderr, "prog load: %s\n%s\n", strerror(errno), log); exit(1); }
	return fd;
}

struct conn { int peer; uint64_t cookie; int used; };
static struct conn C[65536];

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s LISTEN-PORT BACKEND-PORT...\n", argv[0]);
		return 2;
	}
	int lport = atoi(argv[1]), nb = argc - 2, rr = 0, one = 1;
	int peers = map_create(BPF_MAP_TYPE_HASH, 8, 8, 65536);
	int sh = map_create(BPF_MAP_TYPE_SOCKHASH, 8, 4, 65536);
	if (peers < 0 || sh < 0) { perror("map"); return 1; }
	int prog = load_prog(peers, sh);
	union bpf_attr a; memset(&a, 0, sizeof(a));
	a.target_fd = sh; a.attach_bpf_fd = prog; a.attach_type = BPF_SK_SKB_VERDICT;
	if (bpf(BPF_PROG_ATTACH, &a) < 0) { perror("attach"); return 1; }

	int l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, 4);
	setsockopt(l, IPPROTO_TCP, TCP_NODELAY, &one, 4);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(lport) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(l, (void *)&sa, sizeof(sa)) || listen(l, 1024)) { perror("listen"); return 1; }
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = l };
	epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
	struct epoll_event evs[256];
	char buf[65536];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == l) {
				int c = accept4(l, NULL, NULL, 0);
				if (c < 0)
					continue;
				if (c >= 65535) {
					close(c);
					continue;
				}
				int s = socket(AF_INET, SOCK_STREAM, 0);
				setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, 4);
				struct sockaddr_in b = sa; b.sin_port = htons(atoi(argv[2 + rr++ % nb]));
				if (s < 0 || s >= 65536 ||
				    connect(s, (void *)&b, sizeof(b))) {
					close(c);
					if (s >= 0)
						close(s);
					continue;
				}
				uint64_t kc, ks; socklen_t len = 8;
				getsockopt(c, SOL_SOCKET, SO_COOKIE, &kc, &len);
				getsockopt(s, SOL_SOCKET, SO_COOKIE, &ks, &len);
				map_update(peers, &kc, &ks); map_update(peers, &ks, &kc);
				/* A socket that is no longer established (the
				 * client left already) cannot join the map. */
				if (map_update(sh, &kc, &c) || map_update(sh, &ks, &s)) {
					map_delete(sh, &kc);
					map_delete(peers, &kc);
					map_delete(peers, &ks);
					close(c);
					close(s);
					continue;
				}
				C[c] = (struct conn){ s, kc, 1 }; C[s] = (struct conn){ c, ks, 1 };
				/* bytes that came before the socket joined the map */
				ssize_t r = recv(c, buf, sizeof(buf), MSG_DONTWAIT);
				if (r > 0) send(s, buf, r, MSG_NOSIGNAL);
				ev.events = EPOLLIN | EPOLLRDHUP; ev.data.fd = c; epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				ev.data.fd = s; epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
				continue;
			}
			if (!C[fd].used) continue;
			ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r > 0) { send(C[fd].peer, buf, r, MSG_NOSIGNAL); continue; }
			if (r < 0 && errno == EAGAIN) continue;
			int p = C[fd].peer;
			map_delete(peers, &C[fd].cookie); map_delete(peers, &C[p].cookie);
			map_delete(sh, &C[fd].cookie); map_delete(sh, &C[p].cookie);
			C[fd].used = C[p].used = 0;
			close(fd); close(p);
		}
	}
}
