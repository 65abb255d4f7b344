/*
 * main.c - shoal, a small user-space TCP load balancer.
 *
 * Wiring only: load the config, build the server table, start listeners and
 * workers, start health checks and discovery, run the control loop.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "admin.h"
#include "conf.h"
#include "control.h"
#include "health.h"
#include "listen.h"
#include "log.h"
#include "notify.h"
#include "dns.h"
#include "receiver.h"
#include "scale.h"
#include "signals.h"
#include "stats.h"
#include "tls.h"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: shoal [-t] [-c FILE] [-x ADMIN_SOCKET]\n"
	    "\n"
	    "  -c, --config FILE  run with this configuration file\n"
	    "                     (without it: the embedded default config)\n"
	    "  -t, --check        check the configuration and exit\n"
	    "                     (0 if good; else FILE:LINE: message)\n"
	    "  -x, --takeover PATH  take the listening sockets of the shoal\n"
	    "                     whose admin socket is PATH, then stop it\n"
	    "                     (it drains its sessions for its grace)\n"
	    "  -h, --help         this help\n"
	    "  -V, --version      print the version\n"
	    "\n"
	    "shoal runs in the foreground and logs to stderr. SIGTERM or\n"
	    "SIGINT stops accepting and lets sessions finish for `grace`.\n"
	    "See shoal(8) and docs/configuration.md.\n");
}

/* Who follows a reload, and how (control.h). */
static const struct reload_hook discovery_hook = {
	.prepare = discovery_reload_prepare,
	.commit = discovery_reload,
	.abort = discovery_reload_abort,
};
static const struct reload_hook dns_hook = { .commit = dns_reload };
static const struct reload_hook stats_hook = { .commit = stats_reload };
static const struct reload_hook admin_hook = { .commit = admin_reload };

/* What the command line asks for. */
struct args {
	const char	*path;		/* -c, NULL: the embedded default */
	const char	*takeover;	/* -x: the admin socket of the old shoal */
	bool		 check_only;	/* -t */
};

/* Read the command line: -1 to go on, else the exit code (help, version,
 * usage error). */
static int
parse_args(int argc, char *argv[], struct args *a)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 't' },
		{ "takeover", required_argument, NULL, 'x' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(a, 0, sizeof(*a));
	while ((ch = getopt_long(argc, argv, "c:thVx:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			a->path = optarg;
			break;
		case 't':
			a->check_only = true;
			break;
		case 'x':
			a->takeover = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("shoal %s\n", SHOAL_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	return -1;
}

/*
 * Load and check the config: nothing starts on one not fully understood.
 * -1 to go on with *confp, else the exit code (a refusal, or -t done).
 */
static int
load_config(const struct args *a, struct conf **confp)
{
	char		 err[CONF_ERR_MAX] = "";
	struct conf	*conf;

	conf = a->path ? conf_load_file(a->path, err) :
	    conf_load_string("(default)", conf_default_text, err);
	if (conf == NULL || control_check_conf(conf, err) == -1 ||
	    tls_check_conf(conf, err) == -1) {
		fprintf(stderr, "%s\n", err);
		conf_free(conf);
		return 1;
	}
	/* -t checks what start checks, short of binding. */
	if (a->check_only && discovery_check(conf, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s\n", err);
		conf_free(conf);
		return 1;
	}
	if (a->check_only) {
		printf("%s: configuration is valid\n",
		    a->path ? a->path : "(default)");
		conf_free(conf);
		return 0;
	}
	*confp = conf;
	return -1;
}

/* Logging, systemd notification, and the listening sockets that outlive a
 * restart: systemd's, or those of the shoal being replaced. */
static void
adopt_sockets(const struct args *a, struct conf *conf)
{
	char err[CONF_ERR_MAX] = "";

	log_set_level(conf->global.log_level);
	if (notify_init() == -1)
		log_warn("NOTIFY_SOCKET");
	if (a->path == NULL)
		log_info("no -c given: running the embedded default "
		    "configuration");
	if (listen_from_systemd(conf, err, sizeof(err)) == -1)
		fatalx("socket activation: %s", err);
	if (a->takeover != NULL && listen_from_shoal(a->takeover, err,
	    sizeof(err)) == -1)
		fatalx("%s", err);
}

/* The control loop and the server table, health subscribed to it. */
static void
build_table(struct control *ctl, struct conf *conf, const char *path)
{
	if (control_init(ctl, conf, path) == -1)
		fatal("control loop");
	table_set_observer(&health_observer);
	ctl->discovery = &discovery_view;
	ctl->dns = &dns_view;
	tls_start(ctl->loop, conf->global.tls_ticket_rotate_ms);
	if (control_build_table(ctl) == -1)
		fatalx("cannot build the server table");
}

static void
start_health(struct control *ctl)
{
	if (health_start(ctl->loop, &ctl->backends) == -1)
		fatal("health checks");
}

/* The old shoal stops accepting and frees its other ports (clients wait in
 * the backlog of the sockets we now hold); then discovery. */
static void
start_discovery(struct control *ctl)
{
	(void)listen_handover_stop();
	if (discovery_start(ctl->loop, &ctl->conf->discovery, &ctl->backends,
	    ctl->conf) == -1)
		fatalx("cannot start discovery");
	if (dns_start(ctl->loop, &ctl->backends) == -1)
		fatalx("cannot start DNS discovery");
}

/* Every listener is bound before the workers start and READY=1. 0 or -1
 * (logged). */
static int
start_listeners_and_workers(struct control *ctl)
{
	char err[CONF_ERR_MAX] = "";

	if (stats_start(ctl) == -1 || admin_start(ctl) == -1 ||
	    control_start_workers(ctl) == -1 ||
	    listen_inherited_done(err, sizeof(err)) == -1) {
		if (err[0] != '\0')
			log_errorx("%s", err);
		return -1;
	}
	return 0;
}

/* Who follows reloads and stops; READY=1; the control loop until stop. */
static void
run(struct control *ctl)
{
	control_add_reload_hook(&discovery_hook);
	control_add_reload_hook(&dns_hook);
	control_add_reload_hook(&stats_hook);
	control_add_reload_hook(&admin_hook);
	control_add_stop_hook(stats_stop_listening);
	control_add_stop_hook(admin_stop_listening);
	control_ready(ctl);
	ev_run(ctl->loop, 0);
}

/* Everything started, in reverse. */
static void
stop(struct control *ctl)
{
	admin_stop();
	stats_stop();
	dns_stop();
	discovery_stop();
	health_stop();
	scale_stop();
	signals_stop();
	table_set_observer(NULL);
	tls_stop();
	control_fini(ctl);
	tls_fini();
}

int
main(int argc, char *argv[])
{
	struct args	 args;
	struct conf	*conf = NULL;
	struct control	 ctl;
	int		 rc;

	if ((rc = parse_args(argc, argv, &args)) != -1)
		return rc;
	control_ignore_signals();
	if ((rc = load_config(&args, &conf)) != -1)
		return rc;
	adopt_sockets(&args, conf);
	build_table(&ctl, conf, args.path);
	start_health(&ctl);
	signals_start(ctl.loop, &ctl.backends);
	scale_start(ctl.loop, &ctl.backends);
	start_discovery(&ctl);
	if (start_listeners_and_workers(&ctl) == -1) {
		stop(&ctl);
		return 1;
	}
	run(&ctl);
	stop(&ctl);
	notify_fini();
	log_info("exiting");
	return 0;
}
