//! Reading a node's `/metrics` page in tests.

/// The node's Prometheus text page.
pub async fn metrics(http: &reqwest::Client, url: &str) -> String {
    http.get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The sum of the samples of family `name` whose labels contain `labels` (`""`: every series,
/// an unlabelled sample included), or `None` when the page has no such series.
pub fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let mut found = None;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = l.rsplit_once(' ') else {
            continue;
        };
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        if n == name && rest.contains(labels) {
            if let Ok(v) = value.parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
    }
    found
}
