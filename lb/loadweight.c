/*
 * loadweight.c - effective weights from reported load and slow start (the
 * function is documented in loadweight.h and docs/configuration.md).
 */
#include <stddef.h>

#include "loadweight.h"

bool
loadweight_report_usable(const struct loadweight_report *r)
{
	uint64_t	 interval;

	if (r == NULL || !r->have || r->load < 0 || r->load > 100)
		return false;
	interval = r->interval_ms != 0 ? r->interval_ms :
	    LOADWEIGHT_DEFAULT_INTERVAL_MS;
	return r->age_ms <= LOADWEIGHT_STALE_INTERVALS * interval;
}

int
loadweight_load_pct(const struct loadweight_report *r)
{
	int	 pct;

	if (!loadweight_report_usable(r))
		return 100;
	pct = 100 - r->load;
	return pct < LOADWEIGHT_FLOOR_PCT ? LOADWEIGHT_FLOOR_PCT : pct;
}

int
loadweight_ramp_permille(uint64_t up_for_ms, uint64_t slowstart_ms)
{
	uint64_t	 p;

	if (slowstart_ms == 0 || up_for_ms >= slowstart_ms)
		return 1000;
	/* up_for_ms < slowstart_ms, so no overflow below 2^54 ms. */
	p = up_for_ms * 1000 / slowstart_ms;
	if (p < LOADWEIGHT_RAMP_START_PCT * 10)
		p = LOADWEIGHT_RAMP_START_PCT * 10;
	return (int)p;
}

uint32_t
loadweight_effective(int weight, const struct loadweight_report *r,
    uint64_t up_for_ms, uint64_t slowstart_ms)
{
	uint64_t	 w, num, den = 100 * 1000;

	if (weight <= 0)
		return 0;
	w = weight > 256 ? 256 : (uint64_t)weight;
	num = w * LOADWEIGHT_SCALE * (uint64_t)loadweight_load_pct(r) *
	    (uint64_t)loadweight_ramp_permille(up_for_ms, slowstart_ms);
	w = (num + den - 1) / den;
	return w == 0 ? 1 : (uint32_t)w;
}
