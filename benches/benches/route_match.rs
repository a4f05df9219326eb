//! Criterion: route matching (gRFC A28) over 10 / 100 / 1 000 routes, with prefix + exact and
//! present header matchers, and with safe-regex path + regex header matchers. The request
//! matches only the last route, so every route is tried: virtual host lookup
//! (`RouteConfig::find_virtual_host`) then `RouteMatch::matches` in order, as
//! `RouteTable::select` does. The routes come from decoding an RDS resource, so regexes are
//! compiled as the client compiles them.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mesh_benches::micro::{self, RouteKind};
use mesh_client::config::RouteConfig;
use mesh_client::xds::resource::{Resource, ResourceType, decode};

fn route_config(n: usize, kind: RouteKind) -> std::sync::Arc<RouteConfig> {
    match decode(
        ResourceType::RouteConfiguration,
        &micro::route_config(n, kind),
    ) {
        Ok(Resource::RouteConfig(rc)) => rc,
        other => panic!("the bench's RDS resource did not decode: {other:?}"),
    }
}

/// The index of the first route matching the request, as `RouteTable::select` finds it.
fn select(
    rc: &RouteConfig,
    authority: &str,
    path: &str,
    headers: &http::HeaderMap,
) -> Option<usize> {
    let vh = rc.find_virtual_host(authority)?;
    let fraction = 0;
    vh.routes
        .iter()
        .position(|r| r.matcher.matches(path, headers, fraction))
}

fn route_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_match");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for (name, kind) in [("header", RouteKind::Header), ("regex", RouteKind::Regex)] {
        for n in [10usize, 100, 1_000] {
            let rc = route_config(n, kind);
            let (path, headers) = micro::request_for(n - 1, kind);
            assert_eq!(
                select(&rc, "svc.example.com:8080", &path, &headers),
                Some(n - 1)
            );
            group.bench_with_input(BenchmarkId::new(name, n), &rc, |b, rc| {
                b.iter(|| {
                    select(
                        rc,
                        black_box("svc.example.com:8080"),
                        black_box(&path),
                        black_box(&headers),
                    )
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, route_match);
criterion_main!(benches);
