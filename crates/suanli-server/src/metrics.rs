//! Prometheus metrics: requests by status, tokens, queue and KV state,
//! prefix-cache hits, speculative decoding's drafts and acceptance, time to
//! first token and inter-token latency.

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
    spec_drafted: IntCounter,
    spec_accepted: IntCounter,
    spec_checks: IntCounter,
    /// Drafted tokens kept per drafted token, all time.
    spec_acceptance: prometheus::Gauge,
    /// Tokens each checking pass made: the kept drafts and its own.
    spec_length: prometheus::Gauge,
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
            spec_drafted: counter(
                "spec_decode_draft_tokens_total",
                "Tokens drafted for speculative decoding",
            ),
            spec_accepted: counter(
                "spec_decode_accepted_tokens_total",
                "Drafted tokens the model kept",
            ),
            spec_checks: counter(
                "spec_decode_checks_total",
                "Forward passes that checked a draft",
            ),
            spec_acceptance: must(prometheus::Gauge::new(
                "spec_decode_acceptance_rate",
                "Drafted tokens kept per drafted token",
            )),
            spec_length: must(prometheus::Gauge::new(
                "spec_decode_mean_accepted_length",
                "Tokens each checking pass made (kept drafts plus its own)",
            )),
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
            &m.spec_drafted,
            &m.spec_accepted,
            &m.spec_checks,
        ] {
            must(r.register(Box::new(c.clone())));
        }
        for g in [&m.spec_acceptance, &m.spec_length] {
            must(r.register(Box::new(g.clone())));
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

    /// The text exposition, with engine counters brought up to date, and
    /// the inference gateway's names for `model`.
    pub fn render(&self, s: &EngineStats, model: &str) -> String {
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
        catch_up(&self.spec_drafted, s.spec_drafted);
        catch_up(&self.spec_accepted, s.spec_accepted);
        catch_up(&self.spec_checks, s.spec_checks);
        if s.spec_checks > 0 {
            self.spec_acceptance
                .set(s.spec_accepted as f64 / s.spec_drafted.max(1) as f64);
            self.spec_length
                .set((s.spec_accepted + s.spec_checks) as f64 / s.spec_checks as f64);
        }
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
        let mut text = String::from_utf8(buf).unwrap_or_default();
        text.push_str(&model_server_protocol(s, model));
        text
    }
}

/// The model-server protocol of Kubernetes' Gateway API Inference
/// Extension, under the names its endpoint picker reads by default
/// (vLLM's): queue, running sequences, KV-cache use as a fraction, and the
/// cache's configuration. Replicas of `suanli serve` behind an
/// InferencePool are routed by them with no flags.
fn model_server_protocol(s: &EngineStats, model: &str) -> String {
    let label = format!("model_name=\"{}\"", model.replace(['\\', '"', '\n'], "_"));
    let total = s.blocks.total.max(1);
    let usage = s.blocks.used as f64 / total as f64;
    let gauge = |name: &str, help: &str, labels: &str, v: String| {
        format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {v}\n")
    };
    [
        gauge(
            "vllm:num_requests_waiting",
            "Requests waiting for a slot.",
            &label,
            s.waiting.to_string(),
        ),
        gauge(
            "vllm:num_requests_running",
            "Sequences decoding.",
            &label,
            s.running.to_string(),
        ),
        gauge(
            "vllm:kv_cache_usage_perc",
            "KV-cache blocks in use, as a fraction (1 = full).",
            &label,
            format!("{usage}"),
        ),
        gauge(
            "vllm:cache_config_info",
            "The KV cache's configuration.",
            &format!(
                "{label},block_size=\"{}\",num_gpu_blocks=\"{}\",num_cpu_blocks=\"0\"",
                s.block_size, s.blocks.total
            ),
            "1".into(),
        ),
    ]
    .concat()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_reads_queue_running_kv_use_and_cache_config() {
        let m = Metrics::new();
        let s = EngineStats {
            waiting: 3,
            running: 2,
            blocks: suanli_engine::blocks::BlockStats {
                total: 64,
                used: 16,
                free: 48,
                cached: 5,
            },
            block_size: 16,
            prefix_hit_tokens: 0,
            preemptions: 0,
            prompt_tokens: 0,
            generated_tokens: 0,
            steps: 0,
            spec_drafted: 40,
            spec_accepted: 30,
            spec_checks: 10,
        };
        let t = m.render(&s, "qwen");
        for line in [
            "suanli_spec_decode_draft_tokens_total 40",
            "suanli_spec_decode_accepted_tokens_total 30",
            "suanli_spec_decode_checks_total 10",
            "suanli_spec_decode_acceptance_rate 0.75",
            "suanli_spec_decode_mean_accepted_length 4",
            "vllm:num_requests_waiting{model_name=\"qwen\"} 3",
            "vllm:num_requests_running{model_name=\"qwen\"} 2",
            "vllm:kv_cache_usage_perc{model_name=\"qwen\"} 0.25",
            "vllm:cache_config_info{model_name=\"qwen\",block_size=\"16\",num_gpu_blocks=\"64\",num_cpu_blocks=\"0\"} 1",
            "# TYPE vllm:kv_cache_usage_perc gauge",
        ] {
            assert!(t.lines().any(|l| l == line), "missing {line:?} in\n{t}");
        }
    }
}
