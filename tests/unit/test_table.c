/*
 * test_table.c - the server table's door: join, leave, the setters, the
 * events its one observer hears, and publishing once per batch.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "server.h"
#include "t.h"

/* What the observer heard. */
static struct {
	int			 joined, leaving, admin, changed;
	struct server		*last;
	bool			 listed;	/* `leaving`: still in the table */
	struct conf_backend	 was;		/* `backend_changed` */
} ev;

static void
on_joined(struct server *s)
{
	ev.joined++;
	ev.last = s;
}

static void
on_leaving(struct server *s)
{
	ev.leaving++;
	ev.last = s;
	ev.listed = s->in_table && server_find(s->be, s->name) == s;
}

static void
on_admin(struct server *s)
{
	ev.admin++;
	ev.last = s;
}

static void
on_changed(struct backend *be, const struct conf_backend *was)
{
	(void)be;
	ev.changed++;
	ev.was = *was;
}

static const struct table_observer recorder = {
	.joined = on_joined,
	.leaving = on_leaving,
	.admin_changed = on_admin,
	.backend_changed = on_changed,
};

static struct sockaddr_in
addr4(const char *ip, int port)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, ip, &sin.sin_addr);
	return sin;
}

static struct server_spec
spec(const char *name, const struct sockaddr_in *sin, int weight)
{
	struct server_spec sp = {
		.name = name,
		.addr = (const struct sockaddr *)sin,
		.addrlen = sizeof(*sin),
		.weight = weight,
	};

	return sp;
}

/* Whether s is among the eligible servers of the backend's current pool. */
static bool
in_pool(struct backend *be, const struct server *s)
{
	struct pool *p = backend_pool(be);

	for (size_t i = 0; i < p->primary.n; i++)
		if (p->primary.srv[i] == s)
			return true;
	for (size_t i = 0; i < p->backup.n; i++)
		if (p->backup.srv[i] == s)
			return true;
	return false;
}

/* A backend "app" with check = none and two static servers s1, s2. */
static struct backend *
mkbackend(void)
{
	struct conf_backend	cb;
	struct conf_server	cs[2];

	memset(&cb, 0, sizeof(cb));
	memset(cs, 0, sizeof(cs));
	snprintf(cb.name, sizeof(cb.name), "app");
	cb.check = CHECK_NONE;
	cb.fall = 3;
	cb.max_discovered = 8;
	for (int i = 0; i < 2; i++) {
		struct sockaddr_in sin = addr4(i ? "10.0.0.2" : "10.0.0.1", 80);

		snprintf(cs[i].name, sizeof(cs[i].name), "s%d", i + 1);
		memcpy(&cs[i].addr.ss, &sin, sizeof(sin));
		cs[i].addr.len = sizeof(sin);
		cs[i].weight = 1;
	}
	cb.servers = cs;
	cb.nservers = 2;
	return backend_new(&cb);
}

static void
test_join_leave(void)
{
	struct backend		*be;
	struct server		*s, *dup;
	struct server_spec	 sp;
	struct sockaddr_in	 sin = addr4("10.0.0.3", 80);
	struct pool		*p;

	memset(&ev, 0, sizeof(ev));
	be = mkbackend();
	ok(be != NULL && be->nservers == 2, "backend_new: two static servers");
	is_int(ev.joined, 2, "each static server was heard joining");
	ok(be->conf.servers == NULL && be->conf.nservers == 0,
	    "the backend keeps no pointer into the config's servers");
	ok(in_pool(be, server_find(be, "s1")) &&
	    in_pool(be, server_find(be, "s2")), "both published (check = none: up)");

	sp = spec("a1", &sin, 2);
	sp.label = "blue";
	p = backend_pool(be);
	s = server_join(be, &sp, SRC_ANNOUNCED);
	ok(s != NULL && s->source == SRC_ANNOUNCED && s->weight == 2 &&
	    strcmp(s->label, "blue") == 0 && s->announce_up,
	    "server_join: the spec's weight, label, source; announced up");
	ok(ev.joined == 3 && ev.last == s, "joined heard once, with the server");
	ok(backend_pool(be) != p && in_pool(be, s) && be->ndiscovered == 1,
	    "republished at once: the new server can be picked");

	ev.joined = 0;
	dup = server_join(be, &sp, SRC_ADMIN);
	ok(dup == NULL && errno == EEXIST && ev.joined == 0,
	    "a name already in the backend: EEXIST, no event");

	sp = spec("a2", &sin, 1);
	sp.draining = true;
	s = server_join(be, &sp, SRC_ANNOUNCED);
	ok(s != NULL && !s->announce_up && !in_pool(be, s) &&
	    strcmp(server_state_name(s), "drain") == 0,
	    "joined as draining: listed, not eligible, shown as drain");

	/* Leave: heard while still listed, then out of table and pool. */
	s = server_find(be, "a1");
	server_ref(s);		/* a session's */
	p = backend_pool(be);
	ev.leaving = 0;
	server_leave(s);
	ok(ev.leaving == 1 && ev.last == s && ev.listed,
	    "leaving heard once, while the server was still listed");
	ok(!s->in_table && server_find(be, "a1") == NULL && !in_pool(be, s) &&
	    backend_pool(be) != p && be->ndiscovered == 1,
	    "then out of the table and of the new pool");
	server_leave(s);
	is_int(ev.leaving, 1, "leaving a server already out: no event");
	ok(strcmp(s->name, "a1") == 0, "a holder's reference keeps it readable");
	server_unref(s);
	backend_free(be);
}

static void
test_setters(void)
{
	struct backend	*be;
	struct server	*s;
	struct pool	*p;
	double		 t0;

	memset(&ev, 0, sizeof(ev));
	be = mkbackend();
	s = server_find(be, "s1");

	p = backend_pool(be);
	server_set_weight(s, 1, "test");
	ok(backend_pool(be) == p, "server_set_weight to the same weight: "
	    "no publish");
	server_set_weight(s, 0, "test");
	ok(s->weight == 0 && backend_pool(be) != p && !in_pool(be, s),
	    "weight 0: republished without the server");
	server_set_weight(s, 7, "test");
	ok(s->weight == 7 && in_pool(be, s), "weight 7: back in the pool");

	server_set_limits(s, 5, true);
	p = backend_pool(be);
	ok(s->maxconn == 5 && s->backup && p->backup.n == 1 &&
	    p->backup.srv[0] == s && p->primary.n == 1,
	    "server_set_limits: maxconn and backup; it moved to the backups");
	server_set_limits(s, 5, true);
	ok(backend_pool(be) == p, "unchanged limits: no publish");
	server_set_limits(s, 0, false);

	t0 = s->last_change;
	s->last_change = t0 - 10;
	server_set_announced(s, false, "green");
	ok(!s->announce_up && !in_pool(be, s) && s->last_change > t0 - 10 &&
	    strcmp(s->label, "green") == 0,
	    "announced draining: out of the pool, stamped, label taken");
	p = backend_pool(be);
	server_set_announced(s, false, "red");
	ok(backend_pool(be) == p && strcmp(s->label, "red") == 0,
	    "same state, new label: label taken, no publish");
	server_set_announced(s, true, NULL);
	ok(s->announce_up && in_pool(be, s) && s->label[0] == '\0',
	    "announced up again: eligible, label cleared");

	server_set_admin(s, ADM_MAINT, "test");
	ok(ev.admin == 1 && ev.last == s && !in_pool(be, s),
	    "server_set_admin: admin_changed heard, out of the pool");
	server_set_admin(s, ADM_MAINT, "test");
	is_int(ev.admin, 1, "the same admin state again: no event");
	server_set_admin(s, ADM_READY, "test");
	ok(ev.admin == 2 && in_pool(be, s), "ready again: heard, eligible");

	server_set_check_result(s, "L7STS", "HTTP 500", 3.5, 42.0);
	ok(strcmp(s->check_result, "L7STS") == 0 &&
	    strcmp(s->check_detail, "HTTP 500") == 0 &&
	    s->check_duration_ms == 3.5 && s->last_check == 42.0,
	    "server_set_check_result records code, detail, duration, time");
	backend_free(be);
}

static void
test_backend_events(void)
{
	struct backend		*be;
	struct conf_backend	 nb;
	struct conf_server	 cs;

	memset(&ev, 0, sizeof(ev));
	be = mkbackend();
	nb = be->conf;
	nb.check = CHECK_TCP;
	nb.fall = 5;
	nb.check_interval_ms = 1234;
	memset(&cs, 0, sizeof(cs));
	nb.servers = &cs;		/* never kept */
	nb.nservers = 1;
	backend_set_conf(be, &nb);
	ok(ev.changed == 1 && ev.was.check == CHECK_NONE && ev.was.fall == 3,
	    "backend_changed heard, with the previous settings");
	ok(be->conf.check == CHECK_TCP && be->conf.check_interval_ms == 1234 &&
	    atomic_load(&be->fall) == 5 && be->conf.servers == NULL &&
	    be->conf.nservers == 0, "the backend took the new settings");

	ev.leaving = 0;
	backend_retire(be);
	ok(ev.leaving == 2 && be->nservers == 2 &&
	    backend_pool(be)->primary.n == 2,
	    "backend_retire: each server heard leaving, all still in its pool "
	    "for the sessions routed there");
	backend_free(be);
}

static void
test_batch(void)
{
	struct backend		*be, *gone;
	struct sockaddr_in	 sin = addr4("10.0.0.9", 80);
	struct server_spec	 sp;
	struct pool		*p;
	char			 name[16];

	be = mkbackend();
	gone = mkbackend();
	p = backend_pool(be);
	table_batch_begin();
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "b%d", i);
		sp = spec(name, &sin, 1);
		(void)server_join(be, &sp, SRC_ANNOUNCED);
	}
	server_set_weight(server_find(be, "s1"), 3, "test");
	ok(backend_pool(be) == p, "inside a batch: nothing published yet");
	table_batch_begin();
	server_leave(server_find(be, "s2"));
	table_batch_end();
	ok(backend_pool(be) == p, "a nested batch's end publishes nothing");
	server_set_weight(server_find(gone, "s1"), 2, "test");
	backend_free(gone);	/* dirty, freed inside the batch */
	table_batch_end();
	p = backend_pool(be);
	ok(p->primary.n == 6 && in_pool(be, server_find(be, "s1")),
	    "the outer end publishes once: 5 joined, s2 left, s1 reweighted");
	table_batch_end();	/* unbalanced: harmless */
	ok(backend_pool(be) == p, "an extra batch end publishes nothing");
	backend_free(be);
}

int
main(void)
{
	table_set_observer(&recorder);
	test_join_leave();
	test_setters();
	test_backend_events();
	test_batch();
	table_set_observer(NULL);
	qsbr_drain();
	return done_testing();
}
