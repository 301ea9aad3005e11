//! The SVG chart linked from the README: latency distributions (share of events within a
//! latency) and throughputs against the two limits.

use std::path::Path;

use plotters::prelude::*;

/// Cumulative share (0..1) of samples at or under each latency bucket, in ms.
pub(crate) type Cdf = Vec<(f64, f64)>;

pub(crate) fn cdf(buckets: &[(f64, u64)]) -> Cdf {
    let total: u64 = buckets.iter().map(|(_, n)| n).sum();
    let mut seen = 0;
    buckets
        .iter()
        .map(|(ms, n)| {
            seen += n;
            (ms.max(0.01), seen as f64 / total.max(1) as f64)
        })
        .collect()
}

pub(crate) fn draw(
    path: &Path,
    latencies: &[(&str, Cdf)],
    throughputs: &[(&str, f64)],
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1100, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(560);

    let max_ms = latencies
        .iter()
        .flat_map(|(_, c)| c.iter().map(|(ms, _)| *ms))
        .fold(1.0_f64, f64::max);
    let mut chart = ChartBuilder::on(&left)
        .caption(
            "Latency at 1,000 events/s (share of events within)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0.1_f64..max_ms * 1.2).log_scale(), 0.0_f64..1.0)?;
    chart
        .configure_mesh()
        .x_desc("milliseconds after commit (log scale)")
        .y_desc("share of events")
        .draw()?;
    for (i, (name, points)) in latencies.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .draw()?;

    let max = throughputs.iter().map(|(_, v)| *v).fold(1.0_f64, f64::max);
    let mut bars = ChartBuilder::on(&right)
        .caption("Throughput, events/s (same run)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(170)
        .build_cartesian_2d(
            0.0_f64..max * 1.15,
            (0..throughputs.len() - 1).into_segmented(),
        )?;
    bars.configure_mesh()
        .disable_y_mesh()
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => throughputs
                .get(*i)
                .map(|(n, _)| (*n).to_owned())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("events per second")
        .draw()?;
    bars.draw_series(throughputs.iter().enumerate().map(|(i, (_, v))| {
        let color = Palette99::pick(i + 2).filled();
        Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (*v, SegmentValue::Exact(i + 1)),
            ],
            color,
        )
    }))?;
    bars.draw_series(throughputs.iter().enumerate().map(|(i, (_, v))| {
        Text::new(
            format!("{v:.0}"),
            (*v, SegmentValue::CenterOf(i)),
            ("sans-serif", 14),
        )
    }))?;
    root.present()?;
    Ok(())
}
