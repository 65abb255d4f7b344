/*
 * udpflood.c - probe: send one datagram (read from a file) to
 * 127.0.0.1:PORT at RATE per second (0: as fast as sendmmsg goes) for
 * SECONDS, and print "SENT RATE". Used to find the junk flood at which a
 * 1 s announcer still holds its server (tests/integration/
 * test_discovery_flood.py with SHOAL_FLOOD_BIN). Loopback only.
 *
 *   cc -O2 -o /tmp/udpflood bench/probes/udpflood.c
 *   /tmp/udpflood PORT RATE SECONDS FILE
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BURST	64

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	unsigned char		d[600];
	struct sockaddr_in	a;
	struct mmsghdr		m[BURST];
	struct iovec		io;
	double			rate, secs, t0, t;
	long			sent = 0, due;
	size_t			n;
	FILE			*f;
	int			s, k, r;

	if (argc != 5 || (f = fopen(argv[4], "rb")) == NULL) {
		fprintf(stderr, "usage: udpflood PORT RATE SECONDS FILE\n");
		return 2;
	}
	n = fread(d, 1, sizeof(d), f);
	fclose(f);
	rate = atof(argv[2]);
	secs = atof(argv[3]);
	if ((s = socket(AF_INET, SOCK_DGRAM, 0)) == -1)
		return 1;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((unsigned short)atoi(argv[1]));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(s, (struct sockaddr *)&a, sizeof(a)) == -1)
		return 1;
	io.iov_base = d;
	io.iov_len = n;
	memset(m, 0, sizeof(m));
	for (k = 0; k < BURST; k++) {
		m[k].msg_hdr.msg_iov = &io;
		m[k].msg_hdr.msg_iovlen = 1;
	}
	t0 = now();
	while ((t = now()) - t0 < secs) {
		due = rate > 0 ? (long)((t - t0) * rate) : sent + BURST;
		while (sent < due) {
			k = due - sent > BURST ? BURST : (int)(due - sent);
			if ((r = sendmmsg(s, m, (unsigned)k, 0)) <= 0)
				break;
			sent += r;
		}
		if (rate > 0)
			usleep(200);
	}
	printf("%ld %.0f\n", sent, sent / (now() - t0));
	return 0;
}
