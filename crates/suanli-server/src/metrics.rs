//! Prometheus metrics: requests by status, tokens, queue and KV state,
//! prefix-cache hits, time to first token and inter-token latency.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use suanli_engine::EngineStats;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub ttft: Histogram,
    pub itl: Histogram,
    prompt_tokens: IntCounter,
    generated_tokens: IntCounter,
    prefix_hits: IntCounter,
    preemptions: IntCounter,
    waiting: IntGauge,
    running: IntGauge,
    blocks_used: IntGauge,
    blocks_free: IntGauge,
    blocks_cached: IntGauge,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    match r {
        Ok(v) => v,
        // Only reachable with an invalid metric name, fixed below.
        Err(e) => unreachable!("metric definition: {e}"),
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("suanli".into()), None).unwrap_or_default();
        let counter = |name: &str, help: &str| must(IntCounter::new(name, help));
        let gauge = |name: &str, help: &str| must(IntGauge::new(name, help));
        let latency = |name: &str, help: &str, buckets: Vec<f64>| {
            must(Histogram::with_opts(
                HistogramOpts::new(name, help).buckets(buckets),
            ))
        };
        let m = Metrics {
            requests: must(IntCounterVec::new(
                Opts::new("requests_total", "HTTP requests by route and status"),
                &["route", "status"],
            )),
            ttft: latency(
                "time_to_first_token_seconds",
                "Time from request to first generated token",
                vec![
                    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0,
                ],
            ),
            itl: latency(
                "inter_token_latency_seconds",
                "Time between generated tokens of one sequence",
                vec![
                    0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5,
                ],
            ),
            prompt_tokens: counter("prompt_tokens_total", "Prompt tokens computed"),
            generated_tokens: counter("generation_tokens_total", "Tokens generated"),
            prefix_hits: counter(
                "prefix_cache_hit_tokens_total",
                "Prompt tokens served from the prefix cache",
            ),
            preemptions: counter("preemptions_total", "Sequences preempted for KV space"),
            waiting: gauge("queue_depth", "Requests waiting for a slot"),
            running: gauge("running_sequences", "Sequences in the running batch"),
            blocks_used: gauge("kv_blocks_used", "KV cache blocks referenced by sequences"),
            blocks_free: gauge("kv_blocks_free", "KV cache blocks free (incl. cached)"),
            blocks_cached: gauge(
                "kv_blocks_cached",
                "Free KV blocks still holding a cached prefix",
            ),
            registry,
        };
        let r = &m.registry;
        must(r.register(Box::new(m.requests.clone())));
        must(r.register(Box::new(m.ttft.clone())));
        must(r.register(Box::new(m.itl.clone())));
        for c in [
            &m.prompt_tokens,
            &m.generated_tokens,
            &m.prefix_hits,
            &m.preemptions,
        ] {
            must(r.register(Box::new(c.clone())));
        }
        for g in [
            &m.waiting,
            &m.running,
            &m.blocks_used,
            &m.blocks_free,
            &m.blocks_cached,
        ] {
            must(r.register(Box::new(g.clone())));
        }
        m
    }

    /// The text exposition, with engine counters brought up to date.
    pub fn render(&self, s: &EngineStats) -> String {
        let catch_up = |c: &IntCounter, v: u64| {
            let now = c.get();
            if v > now {
                c.inc_by(v - now);
            }
        };
        catch_up(&self.prompt_tokens, s.prompt_tokens);
        catch_up(&self.generated_tokens, s.generated_tokens);
        catch_up(&self.prefix_hits, s.prefix_hit_tokens);
        catch_up(&self.preemptions, s.preemptions);
        self.waiting.set(s.waiting as i64);
        self.running.set(s.running as i64);
        self.blocks_used.set(s.blocks.used as i64);
        self.blocks_free.set(s.blocks.free as i64);
        self.blocks_cached.set(s.blocks.cached as i64);
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
