/*
 * clientid.c - who the client is, and whether it may come in (clientid.h).
 */
#include <sys/socket.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "clientid.h"
#include "conf.h"
#include "server.h"
#include "srclimit.h"

/* A config list as a set; NULL for an empty list. 0, or -1 (errno). */
static int
set_of(const struct conf_cidr *list, size_t n, struct cidr_set **out)
{
	struct cidr	*nets;

	*out = NULL;
	if (n == 0)
		return 0;
	if ((nets = calloc(n, sizeof(*nets))) == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const struct sockaddr *sa = (const struct sockaddr *)&list[i].ss;

		nets[i].family = sa->sa_family;
		nets[i].prefix = list[i].prefix;
		if (sa->sa_family == AF_INET)
			memcpy(nets[i].addr, &((const struct sockaddr_in *)
			    (const void *)sa)->sin_addr, 4);
		else
			memcpy(nets[i].addr, &((const struct sockaddr_in6 *)
			    (const void *)sa)->sin6_addr, 16);
	}
	*out = cidr_set_new(nets, n);
	free(nets);
	return *out == NULL ? -1 : 0;
}

bool
client_policy_wanted(const struct conf_frontend *cf)
{
	return cf->nallow > 0 || cf->ndeny > 0 || cf->accept_proxy ||
	    cf->maxconn_per_source > 0 || cf->rate_per_source > 0;
}

struct client_policy *
client_policy_new(const struct conf_frontend *cf, size_t capacity)
{
	struct client_policy *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->timeout_proxy_ms = cf->timeout_proxy_ms;
	if (set_of(cf->allow, cf->nallow, &p->allow) == -1 ||
	    set_of(cf->deny, cf->ndeny, &p->deny) == -1 ||
	    (cf->accept_proxy && set_of(cf->proxy_from, cf->nproxy_from,
	    &p->proxy_from) == -1))
		goto fail;
	if (cf->maxconn_per_source > 0 || cf->rate_per_source > 0) {
		p->limit = srclimit_new((uint32_t)cf->maxconn_per_source,
		    cf->rate_per_source, capacity);
		if (p->limit == NULL)
			goto fail;
	}
	atomic_init(&p->held, 0);
	return p;
fail:
	client_policy_free(p);
	return NULL;
}

void
client_policy_free(struct client_policy *p)
{
	if (p == NULL)
		return;
	cidr_set_free(p->allow);
	cidr_set_free(p->deny);
	cidr_set_free(p->proxy_from);
	srclimit_free(p->limit);
	free(p);
}

/* Two lists of networks alike, line numbers aside. */
static bool
list_same(const struct conf_cidr *a, size_t na, const struct conf_cidr *b,
    size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (a[i].prefix != b[i].prefix ||
		    memcmp(&a[i].ss, &b[i].ss, sizeof(a[i].ss)) != 0)
			return false;
	return true;
}

bool
client_policy_same(const struct conf_frontend *a,
    const struct conf_frontend *b)
{
	return list_same(a->allow, a->nallow, b->allow, b->nallow) &&
	    list_same(a->deny, a->ndeny, b->deny, b->ndeny) &&
	    a->accept_proxy == b->accept_proxy &&
	    list_same(a->proxy_from, a->nproxy_from, b->proxy_from,
	    b->nproxy_from) &&
	    a->timeout_proxy_ms == b->timeout_proxy_ms &&
	    a->maxconn_per_source == b->maxconn_per_source &&
	    a->rate_per_source == b->rate_per_source;
}

static void
policy_free_cb(void *arg)
{
	client_policy_free(arg);
}

static bool
policy_busy_cb(void *arg)
{
	struct client_policy *p = arg;

	return atomic_load(&p->held) > 0;
}

void
client_policy_retire(struct client_policy *p)
{
	if (p == NULL)
		return;
	/* Out of memory for the note: keeping it forever is the safe way. */
	(void)qsbr_defer(policy_free_cb, policy_busy_cb, p);
}

bool
client_proxy_trusted(const struct client_policy *p,
    const struct sockaddr *peer)
{
	return p->proxy_from != NULL && cidr_set_match(p->proxy_from, peer);
}

enum client_verdict
client_admit(struct client_policy *p, const struct sockaddr *sa,
    uint64_t now_us, bool *held)
{
	*held = false;
	if (p->deny != NULL && cidr_set_match(p->deny, sa))
		return CLIENT_DENIED;
	if (p->allow != NULL && !cidr_set_match(p->allow, sa))
		return CLIENT_DENIED;
	if (p->limit == NULL)
		return CLIENT_OK;
	switch (srclimit_take(p->limit, sa, now_us)) {
	case SRCLIMIT_OK:
		/* Other families are never counted and need no release. */
		if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
			atomic_fetch_add(&p->held, 1);
			*held = true;
		}
		return CLIENT_OK;
	case SRCLIMIT_OVER_CONN:
		return CLIENT_OVER_CONN;
	case SRCLIMIT_OVER_RATE:
		return CLIENT_OVER_RATE;
	case SRCLIMIT_FULL:
		/* Every slot of its bucket holds a connected source: admit
		 * uncounted, as a stick table that is full tracks nothing. */
		break;
	}
	return CLIENT_OK;
}

void
client_release(struct client_policy *p, const struct sockaddr *sa)
{
	srclimit_release(p->limit, sa);
	atomic_fetch_sub(&p->held, 1);
}

struct sni_routes *
sni_routes_new(const struct conf_frontend *cf)
{
	struct sni_routes	*r;
	const char		*why;

	errno = 0;
	if (cf->nroutes == 0)
		return NULL;
	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (r->pat = calloc(cf->nroutes, sizeof(*r->pat))) == NULL ||
	    (r->be = calloc(cf->nroutes, sizeof(*r->be))) == NULL ||
	    (r->backend_name = calloc(cf->nroutes,
	    sizeof(*r->backend_name))) == NULL) {
		sni_routes_free(r);
		errno = ENOMEM;
		return NULL;
	}
	r->n = cf->nroutes;
	r->timeout_preread_ms = cf->timeout_preread_ms;
	for (size_t i = 0; i < r->n; i++) {
		/* Checked at load: cannot fail here. */
		(void)clienthello_route_parse(cf->routes[i].pattern, &r->pat[i],
		    &why);
		r->backend_name[i] = cf->routes[i].backend_name;
	}
	return r;
}

void
sni_routes_free(struct sni_routes *r)
{
	if (r == NULL)
		return;
	free(r->pat);
	free(r->be);
	free(r->backend_name);
	free(r);
}

static void
routes_free_cb(void *arg)
{
	sni_routes_free(arg);
}

void
sni_routes_retire(struct sni_routes *r)
{
	if (r != NULL)
		(void)qsbr_defer(routes_free_cb, NULL, r);
}

/* Take n bytes the peek saw off the socket. 0, or -1 (errno). */
static int
consume(int fd, uint8_t *to, size_t n)
{
	ssize_t r;

	while (n > 0) {
		r = recv(fd, to, n, 0);
		if (r > 0) {
			to += r;
			n -= (size_t)r;
		} else if (r == -1 && errno == EINTR)
			continue;
		else {
			if (r == 0)
				errno = ECONNRESET;
			return -1;
		}
	}
	return 0;
}

int
client_proxy_read(int fd, struct proxy_read *pr, struct proxyproto_hdr *h,
    const char **why)
{
	ssize_t	n;
	int	len;

	do
		n = recv(fd, pr->buf + pr->have, sizeof(pr->buf) - pr->have,
		    MSG_PEEK);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return errno == EAGAIN || errno == EWOULDBLOCK ?
		    PROXY_READ_AGAIN : PROXY_READ_CLOSED;
	if (n == 0) {
		errno = 0;
		return PROXY_READ_CLOSED;
	}
	len = proxyproto_decode(pr->buf, pr->have + (size_t)n, h, why);
	if (len < 0)
		return PROXY_READ_BAD;
	if (len == 0) {
		/* Every byte so far belongs to the header: take them. */
		if (consume(fd, pr->buf + pr->have, (size_t)n) == -1)
			return PROXY_READ_CLOSED;
		pr->have += (size_t)n;
		if (pr->have >= sizeof(pr->buf)) {
			*why = "header longer than 4096 bytes";
			return PROXY_READ_BAD;
		}
		return PROXY_READ_AGAIN;
	}
	/* The header ends inside what we saw: take up to its end only. */
	if (consume(fd, pr->buf + pr->have, (size_t)len - pr->have) == -1)
		return PROXY_READ_CLOSED;
	pr->have = (size_t)len;
	return PROXY_READ_DONE;
}
