/*
 * relay.c - moving bytes between the two sides of a session.
 *
 * relay_copy() is written once and called for both directions. Each
 * direction has at most one buffer, taken from the worker's pool only while
 * bytes are in flight. Backpressure is relay_update(): a side is read only
 * while the bytes read from it have all been written to its peer, and
 * written only while its peer's bytes wait. A full buffer simply stops
 * reading; memory per session is bounded by two buffers.
 *
 * Half-close: EOF read from one side becomes a FIN (shutdown SHUT_WR) to
 * the other once its buffer is flushed; the other direction keeps flowing.
 * An error (RST) on either side closes both with an RST.
 */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "session.h"
#include "worker.h"

#define RELAY_ROUNDS	4	/* reads per direction per wake-up */

/* A side failed (reset, broken pipe): end the session with RSTs. */
static void
relay_abort(struct session *s, struct side *failed)
{
	/* A server that resets before saying anything counts as failing. */
	if (failed->who == 'S' && !s->srv_spoke)
		server_note_failure(s->server);
	session_close(s, failed->who == 'C' ? "CD" : "SD", true);
}

static void
count(struct session *s, struct side *to, size_t n)
{
	struct server *srv = s->server;

	if (to->who == 'S') {
		s->bytes_in += n;
		atomic_fetch_add_explicit(&srv->bytes_in, n,
		    memory_order_relaxed);
	} else {
		s->bytes_out += n;
		atomic_fetch_add_explicit(&srv->bytes_out, n,
		    memory_order_relaxed);
	}
}

/*
 * Move bytes from `from` to its peer until the peer would block, `from`
 * has nothing more, or the round budget is spent. Returns -1 if the
 * session was closed, else 0.
 */
static int
relay_copy(struct session *s, struct side *from)
{
	struct side	*to = from->peer;
	struct buf	*b;
	ssize_t		 n;

	for (int round = 0;; round++) {
		/* Flush what we hold. */
		while ((b = from->buf) != NULL && b->off < b->len) {
			n = send(to->fd, b->data + b->off, b->len - b->off,
			    MSG_NOSIGNAL);
			if (n > 0) {
				b->off += (uint32_t)n;
				count(s, to, (size_t)n);
				session_touch(s, to);
				continue;
			}
			if (n == -1 && errno == EINTR)
				continue;
			if (n == -1 && (errno == EAGAIN ||
			    errno == EWOULDBLOCK))
				return 0;
			relay_abort(s, to);
			return -1;
		}
		if (from->buf != NULL) {
			buf_put(&s->w->bufs, from->buf);
			from->buf = NULL;
		}
		if (from->rd_eof) {
			/* All bytes before the FIN went out: pass it on. */
			if (!to->wr_shut) {
				to->wr_shut = true;
				if (shutdown(to->fd, SHUT_WR) == -1 &&
				    errno != ENOTCONN) {
					relay_abort(s, to);
					return -1;
				}
			}
			return 0;
		}
		/* Read budget spent (level-triggered: we'll be called again),
		 * or a short read drained the socket: don't pay for EAGAIN. */
		if (round >= RELAY_ROUNDS || (round > 0 && from->rd_short))
			return 0;
		if ((b = buf_get(&s->w->bufs)) == NULL) {
			session_close(s, "RD", true);
			return -1;
		}
		from->buf = b;
		n = recv(from->fd, b->data, BUF_SIZE, 0);
		if (n > 0) {
			b->len = (uint32_t)n;
			if (from->who == 'S' && !s->srv_spoke) {
				s->srv_spoke = true;
				server_note_success(s->server);
			}
			from->rd_short = (size_t)n < BUF_SIZE;
			session_touch(s, from);
			continue;
		}
		/* Nothing read: the buffer goes back at once. */
		buf_put(&s->w->bufs, b);
		from->buf = NULL;
		if (n == 0) {
			from->rd_eof = true;
			session_touch(s, from);
			continue;	/* the next turn passes the FIN on */
		}
		if (errno == EINTR) {
			round--;
			continue;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			from->rd_short = true;
			return 0;
		}
		relay_abort(s, from);
		return -1;
	}
}

/* Set a side's watcher to the wanted events, touching libev only on change. */
static void
side_want(struct session *s, struct side *sd, int events)
{
	if (sd->events == events)
		return;
	ev_io_stop(s->w->loop, &sd->io);
	sd->events = events;
	if (events != 0) {
		ev_io_set(&sd->io, sd->fd, events);
		ev_io_start(s->w->loop, &sd->io);
	}
}

/*
 * The one place interest is decided: read a side while nothing read from
 * it waits and it has not ended; write a side while its peer's bytes wait.
 */
static void
relay_update(struct session *s)
{
	struct side *sides[2] = { &s->cli, &s->srv };

	for (int i = 0; i < 2; i++) {
		struct side	*sd = sides[i];
		int		 ev = 0;

		if (!sd->rd_eof && buf_pending(sd->buf) == 0)
			ev |= EV_READ;
		if (buf_pending(sd->peer->buf) > 0)
			ev |= EV_WRITE;
		side_want(s, sd, ev);
	}
}

void
relay_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct side	*sd = io->data;
	struct session	*s = sd->s;

	(void)loop;
	if (revents & EV_CUSTOM) {
		/* Just connected: try both directions once. */
		if (relay_copy(s, &s->srv) == -1 || relay_copy(s, &s->cli) == -1)
			return;
	} else {
		if ((revents & EV_WRITE) && relay_copy(s, sd->peer) == -1)
			return;
		if ((revents & EV_READ) && relay_copy(s, sd) == -1)
			return;
	}
	/* Both directions ended and flushed: a clean close. */
	if (s->cli.rd_eof && s->srv.rd_eof && s->cli.buf == NULL &&
	    s->srv.buf == NULL) {
		/* A clean end counts as a success even for a silent server. */
		if (!s->srv_spoke)
			server_note_success(s->server);
		session_close(s, "--", false);
		return;
	}
	relay_update(s);
}
