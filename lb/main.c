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
#include "receiver.h"
#include "stats.h"

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
static const struct reload_hook stats_hook = { .commit = stats_reload };
static const struct reload_hook admin_hook = { .commit = admin_reload };

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 't' },
		{ "takeover", required_argument, NULL, 'x' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char	*path = NULL, *takeover = NULL;
	bool		 check_only = false;
	char		 err[CONF_ERR_MAX] = "";
	struct conf	*conf;
	struct control	 ctl;
	int		 ch;

	while ((ch = getopt_long(argc, argv, "c:thVx:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check_only = true;
			break;
		case 'x':
			takeover = optarg;
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

	control_ignore_signals();
	/* Load the config: nothing starts on one not fully understood. */
	conf = path ? conf_load_file(path, err) :
	    conf_load_string("(default)", conf_default_text, err);
	if (conf == NULL || control_check_conf(conf, err) == -1) {
		fprintf(stderr, "%s\n", err);
		conf_free(conf);
		return 1;
	}
	/* -t checks what start checks, short of binding. */
	if (check_only && discovery_check(conf, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s\n", err);
		conf_free(conf);
		return 1;
	}
	if (check_only) {
		printf("%s: configuration is valid\n", path ? path : "(default)");
		conf_free(conf);
		return 0;
	}
	log_set_level(conf->global.log_level);
	if (notify_init() == -1)
		log_warn("NOTIFY_SOCKET");
	if (path == NULL)
		log_info("no -c given: running the embedded default "
		    "configuration");
	/* Listening sockets that outlive a restart: systemd's, or those of
	 * the shoal being replaced. */
	if (listen_from_systemd(conf, err, sizeof(err)) == -1)
		fatalx("socket activation: %s", err);
	if (takeover != NULL && listen_from_shoal(takeover, err,
	    sizeof(err)) == -1)
		fatalx("%s", err);

	if (control_init(&ctl, conf, path) == -1)
		fatal("control loop");
	table_set_observer(&health_observer);
	ctl.discovery = &discovery_view;
	if (control_build_table(&ctl) == -1)
		fatalx("cannot build the server table");
	if (health_start(ctl.loop, &ctl.backends) == -1)
		fatal("health checks");
	/* The old shoal stops accepting and frees its other ports; clients
	 * wait in the backlog of the sockets we now hold. */
	(void)listen_handover_stop();
	if (discovery_start(ctl.loop, &conf->discovery, &ctl.backends, conf)
	    == -1)
		fatalx("cannot start discovery");
	/* Every listener is bound before the workers start and READY=1. */
	err[0] = '\0';
	if (stats_start(&ctl) == -1 || admin_start(&ctl) == -1 ||
	    control_start_workers(&ctl) == -1 ||
	    listen_inherited_done(err, sizeof(err)) == -1) {
		if (err[0] != '\0')
			log_errorx("%s", err);
		admin_stop();
		stats_stop();
		discovery_stop();
		health_stop();
		table_set_observer(NULL);
		control_fini(&ctl);
		return 1;
	}
	control_add_reload_hook(&discovery_hook);
	control_add_reload_hook(&stats_hook);
	control_add_reload_hook(&admin_hook);
	control_add_stop_hook(stats_stop_listening);
	control_add_stop_hook(admin_stop_listening);
	control_ready(&ctl);
	ev_run(ctl.loop, 0);
	admin_stop();
	stats_stop();
	discovery_stop();
	health_stop();
	table_set_observer(NULL);
	control_fini(&ctl);
	notify_fini();
	log_info("exiting");
	return 0;
}
