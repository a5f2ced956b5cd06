//! Inline SVG plots drawn with plotters' SVG backend into a `String`.
//!
//! * **Sensitivity** ([`sensitivity_svg`]): for one swept hyperparameter and one metric, the mean
//!   ± std (error bars) over seeds at each value of that hyperparameter, **holding the other
//!   hyperparameters at the baseline's values** (a one-factor-at-a-time slice through the
//!   baseline, not a marginal average: averaging over other factors would mix unrelated
//!   configurations). Values are placed categorically, sorted numerically when all are numbers.
//! * **Paired per-seed** ([`paired_svg`]): baseline score vs configuration score for each shared
//!   seed, a line joining each pair (a slope chart); green lines improve in the metric's
//!   direction, red ones get worse.
//!
//! * **Small multiples** ([`paired_svg_sized`] at [`SMALL`]): the per-seed
//!   pairs of every comparison, one row per comparison, one panel per metric.
//! * **Forest plot** ([`forest_svg`]): Δ with its 95% interval for every
//!   comparison of a metric, a line at 0, significant ones filled.
//! * **Learning curves** ([`curves_svg`]): per configuration, the selection metric after every
//!   epoch (mean over seeds, ± 1 std band), with the epochs the seeds selected marked.
//!
//! Plotting failures never panic: they yield a short HTML note instead of an SVG.

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::model::Goal;
use crate::report::{MetricTable, Row};

const W: u32 = 440;
const H: u32 = 300;
const BLUE: RGBColor = RGBColor(31, 119, 180);
const GOOD: RGBColor = RGBColor(44, 160, 44);
const BAD: RGBColor = RGBColor(214, 39, 40);

/// One point of a sensitivity plot.
#[derive(Debug, Clone, PartialEq)]
pub struct SensitivityPoint {
    /// Display value of the hyperparameter.
    pub label: String,
    /// Mean over seeds.
    pub mean: f64,
    /// Standard deviation over seeds (0 when undefined).
    pub std: f64,
    /// Whether this point is the baseline.
    pub is_baseline: bool,
}

/// Rows of `t` that differ from the baseline only in grid key `key_idx`, sorted by value.
pub fn sensitivity_points(t: &MetricTable, key_idx: usize) -> Vec<SensitivityPoint> {
    let Some(base) = t.rows.iter().find(|row| row.is_baseline) else {
        return Vec::new();
    };
    let mut rows: Vec<&Row> = t
        .rows
        .iter()
        .filter(|row| {
            row.mean.is_finite()
                && row
                    .hyper
                    .iter()
                    .zip(&base.hyper)
                    .enumerate()
                    .all(|(i, (a, b))| i == key_idx || a == b)
        })
        .collect();
    let numeric = |row: &&Row| row.hyper.get(key_idx).and_then(|v| v.parse::<f64>().ok());
    if rows.iter().all(|row| numeric(row).is_some()) {
        rows.sort_by(|a, b| {
            numeric(a)
                .unwrap_or(0.0)
                .total_cmp(&numeric(b).unwrap_or(0.0))
        });
    }
    rows.iter()
        .map(|row| SensitivityPoint {
            label: row.hyper.get(key_idx).cloned().unwrap_or_default(),
            mean: row.mean,
            std: if row.std.is_finite() { row.std } else { 0.0 },
            is_baseline: row.is_baseline,
        })
        .collect()
}

/// Largest magnitude an axis shows: beyond it plotters' tick search does
/// not terminate in reasonable time (and such a metric is a bug upstream).
const MAX_AXIS: f64 = 1e12;

/// The y axis for values in `lo..=hi`, padded by 10 %, never narrower than a
/// millionth of its magnitude (plotters spins on spans near float
/// resolution). Errs for values too large to plot.
fn y_range(lo: f64, hi: f64) -> Result<std::ops::Range<f64>, String> {
    let (lo, hi) = if lo.is_finite() && hi.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    if lo.abs().max(hi.abs()) > MAX_AXIS {
        return Err(format!(
            "values up to {:e} are beyond the plottable ±{MAX_AXIS:e}",
            lo.abs().max(hi.abs())
        ));
    }
    let min_span = (lo.abs().max(hi.abs()) * 1e-6).max(1e-9);
    let pad = ((hi - lo) * 0.1).max(min_span);
    Ok((lo - pad)..(hi + pad))
}

fn failed(what: &str, e: impl std::fmt::Display) -> String {
    format!(
        "<p class=\"plot-error\">{} unavailable: {}</p>",
        crate::escape::html(what),
        crate::escape::html(&e.to_string())
    )
}

/// SVG of a sensitivity plot (see module docs).
pub fn sensitivity_svg(
    title: &str,
    key: &str,
    metric: &str,
    points: &[SensitivityPoint],
) -> String {
    if points.is_empty() {
        return failed("sensitivity plot", "no data");
    }
    let mut buf = String::new();
    let res = draw_sensitivity(&mut buf, title, key, metric, points);
    match res {
        Ok(()) => buf,
        Err(e) => failed("sensitivity plot", e),
    }
}

fn draw_sensitivity(
    buf: &mut String,
    title: &str,
    key: &str,
    metric: &str,
    points: &[SensitivityPoint],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(buf, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let lo = points
        .iter()
        .map(|p| p.mean - p.std)
        .fold(f64::INFINITY, f64::min);
    let hi = points
        .iter()
        .map(|p| p.mean + p.std)
        .fold(f64::NEG_INFINITY, f64::max);
    let k = points.len();
    let labels: Vec<String> = points.iter().map(|p| p.label.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d((0..k).into_segmented(), y_range(lo, hi)?)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(key)
        .y_desc(metric)
        .x_labels(k)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                labels.get(*i).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .draw()?;
    chart.draw_series(LineSeries::new(
        points
            .iter()
            .enumerate()
            .map(|(i, p)| (SegmentValue::CenterOf(i), p.mean)),
        BLUE.stroke_width(2),
    ))?;
    // Error bars: a vertical segment in data coordinates plus 8-pixel caps.
    for (i, p) in points.iter().enumerate() {
        let x = SegmentValue::CenterOf(i);
        let (lo, hi) = (p.mean - p.std, p.mean + p.std);
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x.clone(), lo), (x.clone(), hi)],
            BLUE.stroke_width(1),
        )))?;
        for y in [lo, hi] {
            chart.draw_series(std::iter::once(
                EmptyElement::at((x.clone(), y))
                    + PathElement::new(vec![(-4, 0), (4, 0)], BLUE.stroke_width(1)),
            ))?;
        }
    }
    chart.draw_series(points.iter().enumerate().map(|(i, p)| {
        let style = if p.is_baseline {
            BLACK.filled()
        } else {
            BLUE.filled()
        };
        Circle::new((SegmentValue::CenterOf(i), p.mean), 4, style)
    }))?;
    root.present()?;
    Ok(())
}

/// Colours of the learning curves, in configuration order (the baseline is
/// black).
const PALETTE: [RGBColor; 8] = [
    BLUE,
    RGBColor(255, 127, 14),
    GOOD,
    BAD,
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// SVG of the learning curves: per configuration the mean over seeds of
/// the selection metric after every epoch, a ± 1 std band, and a marker at
/// every epoch a seed selected (larger when several seeds chose it).
pub fn curves_svg(title: &str, metric: &str, curves: &[crate::report::Curve]) -> String {
    if curves.iter().all(|c| c.points.is_empty()) {
        return failed("learning curves", "no history");
    }
    let mut buf = String::new();
    match draw_curves(&mut buf, title, metric, curves) {
        Ok(()) => buf,
        Err(e) => failed("learning curves", e),
    }
}

fn draw_curves(
    buf: &mut String,
    title: &str,
    metric: &str,
    curves: &[crate::report::Curve],
) -> Result<(), Box<dyn std::error::Error>> {
    let points = curves.iter().flat_map(|c| c.points.iter());
    let (mut lo, mut hi, mut last) = (f64::INFINITY, f64::NEG_INFINITY, 1u32);
    for &(epoch, m, s, _) in points {
        lo = lo.min(m - s);
        hi = hi.max(m + s);
        last = last.max(epoch);
    }
    let root = SVGBackend::with_string(buf, (2 * W, H + 60)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(0.5f64..(f64::from(last) + 0.5), y_range(lo, hi)?)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(metric)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    let mut colour = PALETTE.iter().cycle();
    for c in curves.iter().filter(|c| !c.points.is_empty()) {
        let col = if c.is_baseline {
            BLACK
        } else {
            *colour.next().unwrap_or(&BLUE)
        };
        let upper = c.points.iter().map(|&(e, m, s, _)| (f64::from(e), m + s));
        let lower = c
            .points
            .iter()
            .rev()
            .map(|&(e, m, s, _)| (f64::from(e), m - s));
        chart.draw_series(std::iter::once(Polygon::new(
            upper.chain(lower).collect::<Vec<_>>(),
            col.mix(0.12),
        )))?;
        let label = if c.is_baseline {
            format!("{} (baseline)", c.config_key)
        } else {
            c.config_key.clone()
        };
        chart
            .draw_series(LineSeries::new(
                c.points.iter().map(|&(e, m, _, _)| (f64::from(e), m)),
                col.stroke_width(2),
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(2)));
        let mut chosen: std::collections::BTreeMap<u32, usize> = std::collections::BTreeMap::new();
        for &e in &c.selected {
            *chosen.entry(e).or_default() += 1;
        }
        chart.draw_series(chosen.into_iter().filter_map(|(e, n)| {
            let &(_, m, _, _) = c.points.iter().find(|p| p.0 == e)?;
            let r = 3 + (n as i32).min(6);
            Some(Circle::new((f64::from(e), m), r, col.filled()))
        }))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// SVG of a paired per-seed plot: `pairs` are `(seed, baseline, config)`.
pub fn paired_svg(title: &str, metric: &str, goal: Goal, pairs: &[(u64, f64, f64)]) -> String {
    paired_svg_sized(title, metric, goal, pairs, (W, H))
}

/// Size of one panel of the per-seed small multiples.
pub const SMALL: (u32, u32) = (230, 200);

/// [`paired_svg`] at a given size (the small multiples use [`SMALL`]).
pub fn paired_svg_sized(
    title: &str,
    metric: &str,
    goal: Goal,
    pairs: &[(u64, f64, f64)],
    size: (u32, u32),
) -> String {
    if pairs.is_empty() {
        return failed("paired plot", "no shared seeds");
    }
    let mut buf = String::new();
    match draw_paired(&mut buf, title, metric, goal, pairs, size) {
        Ok(()) => buf,
        Err(e) => failed("paired plot", e),
    }
}

fn draw_paired(
    buf: &mut String,
    title: &str,
    metric: &str,
    goal: Goal,
    pairs: &[(u64, f64, f64)],
    size: (u32, u32),
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(buf, size).into_drawing_area();
    root.fill(&WHITE)?;
    let lo = pairs
        .iter()
        .flat_map(|(_, b, a)| [*b, *a])
        .fold(f64::INFINITY, f64::min);
    let hi = pairs
        .iter()
        .flat_map(|(_, b, a)| [*b, *a])
        .fold(f64::NEG_INFINITY, f64::max);
    let labels = ["baseline", "config"];
    let small = size.0 < W;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", if small { 12 } else { 15 }))
        .margin(if small { 6 } else { 10 })
        .x_label_area_size(if small { 22 } else { 30 })
        .y_label_area_size(if small { 48 } else { 55 })
        .build_cartesian_2d((0..2usize).into_segmented(), y_range(lo, hi)?)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(metric)
        .x_labels(2)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                labels.get(*i).map(|s| s.to_string()).unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .draw()?;
    for (_, b, a) in pairs {
        let color = if goal.better(*a, *b) {
            GOOD
        } else if goal.better(*b, *a) {
            BAD
        } else {
            RGBColor(128, 128, 128)
        };
        chart.draw_series(LineSeries::new(
            [
                (SegmentValue::CenterOf(0), *b),
                (SegmentValue::CenterOf(1), *a),
            ],
            color.stroke_width(1),
        ))?;
        chart.draw_series([
            Circle::new((SegmentValue::CenterOf(0), *b), 3, color.filled()),
            Circle::new((SegmentValue::CenterOf(1), *a), 3, color.filled()),
        ])?;
    }
    root.present()?;
    Ok(())
}

/// One comparison in a forest plot.
#[derive(Debug, Clone, PartialEq)]
pub struct ForestRow {
    pub label: String,
    /// Δ = config − baseline.
    pub delta: f64,
    /// Its 95% interval.
    pub ci: [f64; 2],
    pub significant: bool,
}

/// The comparisons of a metric table as forest-plot rows (those with a
/// finite interval).
pub fn forest_rows(t: &MetricTable) -> Vec<ForestRow> {
    t.rows
        .iter()
        .filter_map(|r| {
            let c = r.comparison.as_ref()?;
            (c.delta.is_finite() && c.ci95.iter().all(|x| x.is_finite())).then(|| ForestRow {
                label: r.config_key.clone(),
                delta: c.delta,
                ci: c.ci95,
                significant: c.significant,
            })
        })
        .collect()
}

/// SVG of a forest plot: one line per comparison, Δ with its 95% interval,
/// a vertical line at 0; significant comparisons are filled.
pub fn forest_svg(title: &str, metric: &str, rows: &[ForestRow]) -> String {
    if rows.is_empty() {
        return failed("forest plot", "no comparison with an interval");
    }
    let mut buf = String::new();
    match draw_forest(&mut buf, title, metric, rows) {
        Ok(()) => buf,
        Err(e) => failed("forest plot", e),
    }
}

fn draw_forest(
    buf: &mut String,
    title: &str,
    metric: &str,
    rows: &[ForestRow],
) -> Result<(), Box<dyn std::error::Error>> {
    let n = rows.len();
    let height = 110 + 34 * u32::try_from(n).unwrap_or(u32::MAX / 64).min(400);
    let root = SVGBackend::with_string(buf, (2 * W, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let lo = rows.iter().map(|r| r.ci[0]).fold(0.0, f64::min);
    let hi = rows.iter().map(|r| r.ci[1]).fold(0.0, f64::max);
    let short = |s: &str| {
        let chars: Vec<char> = s.chars().collect();
        if chars.len() > 34 {
            format!("{}…", chars.iter().take(33).collect::<String>())
        } else {
            s.to_string()
        }
    };
    let labels: Vec<String> = rows.iter().map(|r| short(&r.label)).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(230)
        .build_cartesian_2d(y_range(lo, hi)?, (0..n).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(format!("Δ {metric} (config − baseline)"))
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                labels.get(*i).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .draw()?;
    chart.draw_series(LineSeries::new(
        [(0.0, SegmentValue::Exact(0)), (0.0, SegmentValue::Last)],
        BLACK.mix(0.6).stroke_width(1),
    ))?;
    for (i, r) in rows.iter().enumerate() {
        let y = SegmentValue::CenterOf(i);
        chart.draw_series(LineSeries::new(
            [(r.ci[0], y.clone()), (r.ci[1], y.clone())],
            BLUE.stroke_width(2),
        ))?;
        let style = if r.significant {
            BLUE.filled()
        } else {
            WHITE.filled()
        };
        chart.draw_series([
            Circle::new((r.delta, y.clone()), 5, style),
            Circle::new((r.delta, y), 5, BLUE.stroke_width(2)),
        ])?;
    }
    root.present()?;
    Ok(())
}

/// `(seed, baseline, config)` for the seeds shared by `row` and the baseline row of `t`.
pub fn pairs(t: &MetricTable, row: &Row) -> Vec<(u64, f64, f64)> {
    let Some(base) = t.rows.iter().find(|r| r.is_baseline) else {
        return Vec::new();
    };
    // With cross-validation a seed has one value per fold: pair on both.
    let fold = |r: &Row, i: usize| r.folds.get(i).copied();
    row.seeds
        .iter()
        .zip(&row.values)
        .enumerate()
        .filter_map(|(i, (s, a))| {
            (0..base.seeds.len())
                .find(|&j| base.seeds.get(j) == Some(s) && fold(base, j) == fold(row, i))
                .and_then(|j| base.values.get(j))
                .map(|b| (*s, *b, *a))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the report's property test: plotters' tick search spun for
    /// minutes on huge values and on spans near float resolution.
    #[test]
    fn extreme_values_give_a_plot_or_a_message_at_once() {
        let start = std::time::Instant::now();
        for pairs in [
            vec![(1, 1e300, -1e300)],
            vec![(1, 1e11, 1e11 + 1e-5)],
            vec![(1, 0.5, 0.5)],
            vec![(1, 1e-300, 2e-300)],
            vec![(1, f64::NAN, 0.5)],
        ] {
            let svg = paired_svg("t", "m", Goal::Max, &pairs);
            assert!(svg.contains("<svg") || svg.contains("plot-error"), "{svg}");
        }
        let svg = paired_svg("t", "m", Goal::Max, &[(1, 1e300, 0.0)]);
        assert!(svg.contains("beyond the plottable"), "{svg}");
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }
}
