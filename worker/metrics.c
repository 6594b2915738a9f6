/*
 * metrics.c (worker) - the HTTP routes of the metrics: GET /metrics
 * (admin addresses only: OpenMetrics text when the Accept header asks
 * for application/openmetrics-text, Prometheus text 0.0.4 otherwise)
 * and GET /health (any peer, for load balancers: 200 "ready", or 503
 * and the first reason not to be).  Both read the shared memory every
 * worker and the master map (shm/metrics.c): whichever worker takes the
 * request answers for all of them, without asking the others.
 * GET /health/live (the worker's loop answers) is the HTTP front's own.
 * Failure policy: a response that does not fit its buffer is a 500;
 * nothing here blocks.
 */
#include "worker.h"
#include "http.h"
#include "metrics.h"

#include <string.h>

static void metrics_http_get(struct worker *w, const struct http_request *req,
			     struct http_response *resp)
{
	enum metrics_format f = metrics_format_for(http_header(req, "Accept"));
	if (metrics_render(w->shm, w->shm->hdr->nslots, &resp->body, f) < 0) {
		resp->status = 500;
		resp->content_type = "text/plain; charset=utf-8";
		resp->body.len = resp->body.off;
		buf_appendf(&resp->body, "metrics do not fit the response\n");
		return;
	}
	resp->content_type = f == METRICS_OPENMETRICS ? METRICS_CT_OPENMETRICS
						      : METRICS_CT_PROMETHEUS;
}

static void metrics_http_health(struct worker *w,
				const struct http_request *req,
				struct http_response *resp)
{
	char reason[256];
	(void)req;
	/* readiness is the workers' (the cluster bridge serves no
	 * client); the figures above cover every slot, bridge included */
	int ready = metrics_health(w->shm, w->nslots, reason,
				   sizeof(reason));
	resp->status = ready ? 200 : 503;
	resp->content_type = "text/plain; charset=utf-8";
	/* a monitor must not be shown a verdict a cache kept */
	http_response_header(resp, "Cache-Control", "no-store");
	buf_appendf(&resp->body, "%s\n", reason);
}

void metrics_http_routes(void)
{
	http_route_add("/metrics", HTTP_M_GET, HTTP_ROUTE_ADMIN,
		       metrics_http_get);
	http_route_add("/health", HTTP_M_GET, 0, metrics_http_health);
}
