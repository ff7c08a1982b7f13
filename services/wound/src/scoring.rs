//! The figures the service computes, as pure functions: areas, the PUSH score (NPIAP PUSH Tool
//! 3.0), percent area reductions, the healing trend and which alerts an assessment raises.
//!
//! Lengths are whole millimetres (the contract's precision), so a rectangle area is an exact
//! integer number of mm² and every rounding below is done once, on integers, where it can be.

use jiff::{SignedDuration, Timestamp, tz::TimeZone};

use crate::domain::{AlertCause, AreaMethod, Exudate, Tissue};

/// The configurable thresholds of the rules below (see `[wound_rules]`).
#[derive(Debug, Clone)]
pub struct Rules {
    /// AREA_INCREASE when the rectangle area rises by at least this, in percent.
    pub area_increase_percent: f64,
    /// PUSH_INCREASE when the PUSH total rises by at least this many points.
    pub push_increase_points: i32,
    /// INSUFFICIENT_REDUCTION when the reduction from baseline is below this, in percent…
    pub min_reduction_percent: f64,
    /// …at an assessment at least this long after the episode's baseline.
    pub follow_up: SignedDuration,
    /// Planned interval of wounds that do not give one, in days.
    pub default_interval_days: i64,
    /// How often the overdue sweeper runs.
    pub overdue_check: std::time::Duration,
    /// How long an unreferenced pending photo is kept.
    pub pending_photo_lifetime: SignedDuration,
    /// Healing trend bands: area change in percent…
    pub trend_area_percent: f64,
    /// …PUSH change in points…
    pub trend_push_points: i32,
    /// …and the shortest span of assessments that shows a trend.
    pub trend_min_span: SignedDuration,
}

impl Rules {
    /// The clinical rules from the configuration.
    pub fn from_settings(settings: &telehealth_kit::config::WoundRules) -> Rules {
        let days = |d: u32| SignedDuration::from_hours(24 * i64::from(d));
        Rules {
            area_increase_percent: settings.area_increase_alert_percent,
            push_increase_points: i32::try_from(settings.push_increase_alert_points).unwrap_or(2),
            min_reduction_percent: settings.four_week_min_reduction_percent,
            follow_up: days(settings.four_week_follow_up_days),
            default_interval_days: i64::from(settings.default_assessment_interval_days),
            overdue_check: std::time::Duration::from_secs(settings.overdue_check_interval_seconds),
            pending_photo_lifetime: SignedDuration::from_hours(i64::from(
                settings.pending_photo_lifetime_hours,
            )),
            trend_area_percent: settings.trend_area_change_percent,
            trend_push_points: i32::try_from(settings.trend_push_change_points).unwrap_or(2),
            trend_min_span: days(settings.trend_min_span_days),
        }
    }
}

/// The defaults are the configuration's: one source for each.
impl Default for Rules {
    fn default() -> Self {
        Rules::from_settings(&telehealth_kit::config::WoundRules::default())
    }
}

/// The window of the "last 4 weeks" figures.
pub const FOUR_WEEKS: SignedDuration = SignedDuration::from_hours(24 * 28);
/// The 4-week reference assessment lies between 21…
const FOUR_WEEK_MIN: SignedDuration = SignedDuration::from_hours(24 * 21);
/// …and 35 days before the assessment.
const FOUR_WEEK_MAX: SignedDuration = SignedDuration::from_hours(24 * 35);

/// Rectangle area L × W in mm².
pub fn rectangle_mm2(length_mm: i64, width_mm: i64) -> i64 {
    length_mm * width_mm
}

/// The area by `method`, in cm², rounded to 0.01 cm² (the rectangle area is exact).
pub fn area_cm2(method: AreaMethod, length_mm: i64, width_mm: i64) -> f64 {
    let mm2 = rectangle_mm2(length_mm, width_mm) as f64;
    let cm2 = match method {
        AreaMethod::Rectangle => mm2 / 100.0,
        AreaMethod::Ellipse => std::f64::consts::FRAC_PI_4 * mm2 / 100.0,
    };
    round_to(cm2, 100.0)
}

/// A PUSH Tool 3.0 score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Push {
    pub area: i32,
    pub exudate: i32,
    pub tissue: i32,
    pub total: i32,
    /// The exact rectangle area L × W the area sub-score was read from, in mm².
    pub scored_area_mm2: i64,
}

/// The published area bands of PUSH Tool 3.0 as the largest area of each sub-score, in mm²
/// (100 mm² = 1 cm²): `< 0.3` → 1, `0.3–0.6` → 2, `0.7–1.0` → 3, `1.1–2.0` → 4, `2.1–3.0` → 5,
/// `3.1–4.0` → 6, `4.1–8.0` → 7, `8.1–12.0` → 8, `12.1–24.0` → 9; anything larger (`> 24.0`)
/// scores 10. Sub-score 1 is "less than 0.3", so its largest area is 0.29 cm².
const PUSH_AREA_BANDS_MM2: [(i64, i32); 9] = [
    (29, 1),
    (60, 2),
    (100, 3),
    (200, 4),
    (300, 5),
    (400, 6),
    (800, 7),
    (1200, 8),
    (2400, 9),
];

/// The PUSH area sub-score of an exact rectangle area in mm².
///
/// The published bands are written to one decimal (0.3–0.6, 0.7–1.0…), as a ruler read to the
/// millimetre rarely gives more; an exact area is compared with their thresholds without
/// rounding it first: each band ends at its published upper bound (inclusive) and the next one
/// starts just above, as the last band (`> 24.0`) says. So 0.25 cm² is `< 0.3` (1), 0.65 cm² is
/// above 0.6 (3) and 24.01 cm² is `> 24.0` (10). Integer arithmetic, no floating point.
pub fn push_area_subscore(area_mm2: i64) -> i32 {
    if area_mm2 <= 0 {
        return 0;
    }
    PUSH_AREA_BANDS_MM2
        .iter()
        .find(|(largest, _)| area_mm2 <= *largest)
        .map_or(10, |(_, score)| *score)
}

/// The PUSH score of an assessment.
pub fn push(length_mm: i64, width_mm: i64, tissue: Tissue, exudate: Exudate) -> Push {
    let scored_area_mm2 = rectangle_mm2(length_mm, width_mm);
    let area = push_area_subscore(scored_area_mm2);
    let (exudate, tissue) = (exudate.push_subscore(), tissue.push_subscore());
    Push {
        area,
        exudate,
        tissue,
        total: area + exudate + tissue,
        scored_area_mm2,
    }
}

/// (baseline − current) / baseline × 100, rounded to 0.1; `None` for a baseline of 0.
pub fn percent_reduction(baseline_mm2: i64, current_mm2: i64) -> Option<f64> {
    if baseline_mm2 <= 0 {
        return None;
    }
    let reduction = (baseline_mm2 - current_mm2) as f64 * 100.0 / baseline_mm2 as f64;
    Some(round_to(reduction, 10.0))
}

fn round_to(value: f64, scale: f64) -> f64 {
    (value * scale).round() / scale
}

/// One assessment of a series (its current version), as the rules need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub assessment_id: String,
    pub assessed_at: Timestamp,
    pub length_mm: i64,
    pub width_mm: i64,
    pub tissue: Tissue,
    pub exudate: Exudate,
    pub infection_signs: Vec<i32>,
}

impl Point {
    /// Rectangle area in mm².
    pub fn area_mm2(&self) -> i64 {
        rectangle_mm2(self.length_mm, self.width_mm)
    }

    /// PUSH score.
    pub fn push(&self) -> Push {
        push(self.length_mm, self.width_mm, self.tissue, self.exudate)
    }
}

/// The figures of one assessment that depend on the rest of its episode.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// True for the episode's first assessment.
    pub baseline: bool,
    /// Percent reduction of the rectangle area from the baseline (`None` for the baseline
    /// itself or a baseline of 0 cm²).
    pub from_baseline: Option<f64>,
    /// The 4-week reference assessment and the percent reduction since it.
    pub four_weeks: Option<(String, f64)>,
}

/// The index of the 4-week reference of `points[index]`: the earlier assessment of the episode
/// closest to 28 days before it, between 21 and 35 days before; the earlier one on a tie.
/// `points` is one episode, sorted by (assessed_at, assessment id).
pub fn four_week_reference(points: &[Point], index: usize) -> Option<usize> {
    let at = points.get(index)?.assessed_at;
    let mut best: Option<(SignedDuration, usize)> = None;
    for (j, candidate) in points.iter().enumerate().take(index) {
        let before = at.duration_since(candidate.assessed_at);
        if before < FOUR_WEEK_MIN || before > FOUR_WEEK_MAX {
            continue;
        }
        let distance = (before - FOUR_WEEKS).abs();
        // Strictly closer wins; on a tie the one seen first (the earlier) stays.
        if best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, j));
        }
    }
    best.map(|(_, j)| j)
}

/// The figures of `points[index]` within its episode (`points` sorted by assessed_at, id).
pub fn figures(points: &[Point], index: usize) -> Figures {
    let Some(point) = points.get(index) else {
        return Figures {
            baseline: false,
            from_baseline: None,
            four_weeks: None,
        };
    };
    let baseline = index == 0;
    let from_baseline = if baseline {
        None
    } else {
        percent_reduction(points[0].area_mm2(), point.area_mm2())
    };
    let four_weeks = four_week_reference(points, index).and_then(|j| {
        percent_reduction(points[j].area_mm2(), point.area_mm2())
            .map(|p| (points[j].assessment_id.clone(), p))
    });
    Figures {
        baseline,
        from_baseline,
        four_weeks,
    }
}

/// Overall direction of healing (the contract's `HealingTrend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealingTrend {
    InsufficientData = 1,
    Improving = 2,
    Stable = 3,
    Deteriorating = 4,
    Healed = 5,
}

/// The healing trend of an episode (`points` sorted by assessed_at, id).
///
/// Healed when the wound was closed as healed or the latest assessment has closed tissue and no
/// area. Otherwise the latest assessment is compared with the earliest one of the four weeks
/// before it: fewer than two assessments, or less than `trend_min_span` between them, is
/// insufficient data; a rise of the area or of the PUSH total reaching its band is
/// deteriorating (deterioration wins when area and PUSH disagree: it is the one that needs a
/// look); a fall reaching its band is improving; anything else is stable.
pub fn healing_trend(points: &[Point], closed_as_healed: bool, rules: &Rules) -> HealingTrend {
    if closed_as_healed {
        return HealingTrend::Healed;
    }
    let Some(latest) = points.last() else {
        return HealingTrend::InsufficientData;
    };
    if latest.tissue == Tissue::Closed && latest.area_mm2() == 0 {
        return HealingTrend::Healed;
    }
    let window = last_four_weeks(points);
    let (Some(first), true) = (window.first(), window.len() >= 2) else {
        return HealingTrend::InsufficientData;
    };
    if latest.assessed_at.duration_since(first.assessed_at) < rules.trend_min_span {
        return HealingTrend::InsufficientData;
    }
    let (before, now) = (first.area_mm2(), latest.area_mm2());
    let area_change = if before == 0 {
        if now > 0 { f64::INFINITY } else { 0.0 }
    } else {
        (now - before) as f64 * 100.0 / before as f64
    };
    let push_change = latest.push().total - first.push().total;
    if area_change >= rules.trend_area_percent || push_change >= rules.trend_push_points {
        HealingTrend::Deteriorating
    } else if area_change <= -rules.trend_area_percent || push_change <= -rules.trend_push_points {
        HealingTrend::Improving
    } else {
        HealingTrend::Stable
    }
}

/// The points of the four weeks up to the latest one (inclusive at both ends).
fn last_four_weeks(points: &[Point]) -> &[Point] {
    let Some(latest) = points.last() else {
        return points;
    };
    let from = latest.assessed_at - FOUR_WEEKS;
    let start = points
        .iter()
        .position(|p| p.assessed_at >= from)
        .unwrap_or(points.len());
    &points[start..]
}

/// Rate of change of the area by `method` over the last four weeks, by least squares, in cm²
/// per week (negative when shrinking), rounded to 0.01; `None` with fewer than two distinct
/// assessment times in that period.
pub fn area_change_per_week(points: &[Point], method: AreaMethod) -> Option<f64> {
    let window = last_four_weeks(points);
    let origin = window.first()?.assessed_at;
    let xy: Vec<(f64, f64)> = window
        .iter()
        .map(|p| {
            let weeks = p.assessed_at.duration_since(origin).as_secs_f64() / (7.0 * 86_400.0);
            (weeks, area_cm2(method, p.length_mm, p.width_mm))
        })
        .collect();
    let n = xy.len() as f64;
    let mean_x = xy.iter().map(|(x, _)| x).sum::<f64>() / n;
    let mean_y = xy.iter().map(|(_, y)| y).sum::<f64>() / n;
    let sxx: f64 = xy.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    if xy.len() < 2 || sxx <= f64::EPSILON {
        return None;
    }
    let sxy: f64 = xy.iter().map(|(x, y)| (x - mean_x) * (y - mean_y)).sum();
    Some(round_to(sxy / sxx, 100.0))
}

/// An alert an assessment raises, before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertDraft {
    pub cause: AlertCause,
    /// Names the cause and its occurrence; the database keeps one alert per key.
    pub dedupe_key: String,
    pub assessment_id: String,
    pub compared_assessment_id: String,
    pub previous_value: Option<f64>,
    pub current_value: Option<f64>,
    pub threshold: Option<f64>,
    pub summary: String,
}

/// The alerts `points[index]` calls for (an episode of wound `wound_id`, sorted by
/// assessed_at, id). Whether each was already raised is for the database to say.
pub fn assessment_alerts(
    wound_id: &str,
    episode: i64,
    points: &[Point],
    index: usize,
    rules: &Rules,
) -> Vec<AlertDraft> {
    let Some(point) = points.get(index) else {
        return Vec::new();
    };
    let id = point.assessment_id.as_str();
    let mut drafts = Vec::new();
    let draft = |cause, key: String| AlertDraft {
        cause,
        dedupe_key: key,
        assessment_id: id.to_owned(),
        compared_assessment_id: String::new(),
        previous_value: None,
        current_value: None,
        threshold: None,
        summary: String::new(),
    };
    if let Some(previous) = index.checked_sub(1).and_then(|i| points.get(i)) {
        let visit = french_date(previous.assessed_at);
        let (before, now) = (previous.area_mm2(), point.area_mm2());
        // now ≥ before × (1 + t/100), in a form exact for whole mm² and whole percents.
        let rose = now > before
            && now as f64 * 100.0 >= before as f64 * (100.0 + rules.area_increase_percent);
        if rose {
            let summary = if before == 0 {
                format!(
                    "Surface {:.2} cm² alors que la plaie était fermée le {visit}",
                    now as f64 / 100.0
                )
            } else {
                let percent = (now - before) as f64 * 100.0 / before as f64;
                format!("Surface +{percent:.0} % depuis la visite du {visit}")
            };
            drafts.push(AlertDraft {
                compared_assessment_id: previous.assessment_id.clone(),
                previous_value: Some(before as f64 / 100.0),
                current_value: Some(now as f64 / 100.0),
                threshold: Some(rules.area_increase_percent),
                summary,
                ..draft(AlertCause::AreaIncrease, format!("area:{id}"))
            });
        }
        let (before, now) = (previous.push().total, point.push().total);
        if now - before >= rules.push_increase_points {
            drafts.push(AlertDraft {
                compared_assessment_id: previous.assessment_id.clone(),
                previous_value: Some(f64::from(before)),
                current_value: Some(f64::from(now)),
                threshold: Some(f64::from(rules.push_increase_points)),
                summary: format!(
                    "Score PUSH {before} → {now} (+{}) depuis la visite du {visit}",
                    now - before
                ),
                ..draft(AlertCause::PushIncrease, format!("push:{id}"))
            });
        }
    }
    if !point.infection_signs.is_empty() {
        let signs: Vec<&str> = point
            .infection_signs
            .iter()
            .map(|s| infection_sign_label(*s))
            .collect();
        drafts.push(AlertDraft {
            current_value: Some(point.infection_signs.len() as f64),
            summary: format!("Signes d'infection : {}", signs.join(", ")),
            ..draft(AlertCause::InfectionSigns, format!("infection:{id}"))
        });
    }
    if let Some(baseline) = points.first().filter(|_| index > 0) {
        let followed = point.assessed_at.duration_since(baseline.assessed_at);
        if followed >= rules.follow_up
            && let Some(reduction) = percent_reduction(baseline.area_mm2(), point.area_mm2())
            && reduction < rules.min_reduction_percent
        {
            drafts.push(AlertDraft {
                compared_assessment_id: baseline.assessment_id.clone(),
                current_value: Some(reduction),
                threshold: Some(rules.min_reduction_percent),
                summary: format!(
                    "{} en {} jours (réduction attendue d'au moins {:.0} %)",
                    area_change(reduction),
                    followed.as_hours() / 24,
                    rules.min_reduction_percent
                ),
                ..draft(
                    AlertCause::InsufficientReduction,
                    format!("reduction:{wound_id}:{episode}"),
                )
            });
        }
    }
    drafts
}

/// How the area changed, for a person: a negative reduction is a wound that grew.
fn area_change(reduction_percent: f64) -> String {
    let rounded = reduction_percent.round();
    if rounded > 0.0 {
        format!("Surface réduite de {rounded:.0} %")
    } else if rounded < 0.0 {
        format!("Surface augmentée de {:.0} %", -rounded)
    } else {
        "Surface inchangée".to_owned()
    }
}

/// The overdue alert of a wound whose assessment was due at `due_at`.
pub fn overdue_alert(wound_id: &str, episode: i64, due_at: Timestamp) -> AlertDraft {
    AlertDraft {
        cause: AlertCause::AssessmentOverdue,
        dedupe_key: format!("overdue:{wound_id}:{episode}:{}", due_at.as_microsecond()),
        assessment_id: String::new(),
        compared_assessment_id: String::new(),
        previous_value: None,
        current_value: None,
        threshold: None,
        summary: format!(
            "Évaluation attendue le {} non réalisée",
            french_date(due_at)
        ),
    }
}

/// `dd/mm/yyyy` in Europe/Paris (the summaries are read by French centres).
fn french_date(at: Timestamp) -> String {
    let zone = TimeZone::get("Europe/Paris").unwrap_or(TimeZone::UTC);
    at.to_zoned_datetime(zone).strftime("%d/%m/%Y").to_string()
}

fn infection_sign_label(sign: i32) -> &'static str {
    match sign {
        1 => "érythème extensif",
        2 => "chaleur locale",
        3 => "œdème",
        4 => "douleur accrue",
        5 => "écoulement purulent",
        6 => "odeur",
        7 => "exsudat accru",
        8 => "tissu de granulation friable",
        9 => "désunion ou extension",
        10 => "fièvre",
        _ => "autre signe",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rectangle area in mm² as the product of a length and a width in mm.
    fn mm2(length_mm: i64, width_mm: i64) -> i64 {
        rectangle_mm2(length_mm, width_mm)
    }

    #[test]
    fn the_push_area_subscore_compares_the_exact_area_with_every_published_threshold() {
        // (area in mm², expected sub-score, why) — 100 mm² = 1 cm², bands of PUSH Tool 3.0,
        // each threshold from both sides, in exact mm² (never rounded to one decimal first).
        let cases = [
            (0, 0, "0 cm²: healed"),
            (1, 1, "0.01 cm²: the smallest wound, < 0.3"),
            (25, 1, "0.25 cm² is < 0.3 (not rounded up to 0.3)"),
            (29, 1, "0.29 cm²: just below 0.3"),
            (30, 2, "0.30 cm²: lower edge of 0.3–0.6"),
            (60, 2, "0.60 cm²: upper edge of 0.3–0.6"),
            (61, 3, "0.61 cm²: above 0.6"),
            (65, 3, "0.65 cm²: above 0.6"),
            (100, 3, "1.00 cm²: upper edge of 0.7–1.0"),
            (101, 4, "1.01 cm²: above 1.0"),
            (200, 4, "2.00 cm²: upper edge of 1.1–2.0"),
            (201, 5, "2.01 cm²: above 2.0"),
            (300, 5, "3.00 cm²: upper edge of 2.1–3.0"),
            (301, 6, "3.01 cm²: above 3.0"),
            (400, 6, "4.00 cm²: upper edge of 3.1–4.0"),
            (401, 7, "4.01 cm²: above 4.0"),
            (800, 7, "8.00 cm²: upper edge of 4.1–8.0"),
            (801, 8, "8.01 cm²: above 8.0"),
            (1200, 8, "12.00 cm²: upper edge of 8.1–12.0"),
            (1201, 9, "12.01 cm²: above 12.0"),
            (2400, 9, "24.00 cm²: upper edge of 12.1–24.0"),
            (2401, 10, "24.01 cm² is > 24.0"),
            (2404, 10, "24.04 cm² is > 24.0 (not rounded down to 24.0)"),
            (mm2(1000, 1000), 10, "the largest wound, 10,000 cm²"),
        ];
        for (area, expected, why) in cases {
            assert_eq!(push_area_subscore(area), expected, "{why}");
        }
        // Through lengths and widths: 5 mm × 5 mm = 0.25 cm², 49 mm × 49 mm = 24.01 cm².
        let granulation = |l, w| push(l, w, Tissue::Granulation, Exudate::None);
        assert_eq!(granulation(5, 5).area, 1, "0.5 cm × 0.5 cm");
        assert_eq!(granulation(5, 5).scored_area_mm2, 25);
        assert_eq!(granulation(49, 49).area, 10, "4.9 cm × 4.9 cm");
        assert_eq!(granulation(48, 50).area, 9, "4.8 cm × 5.0 cm = 24.0 cm²");
    }

    #[test]
    fn the_push_exudate_and_tissue_subscores_follow_the_published_table() {
        let exudate = [
            (Exudate::None, 0),
            (Exudate::Light, 1),
            (Exudate::Moderate, 2),
            (Exudate::Heavy, 3),
        ];
        let tissue = [
            (Tissue::Closed, 0),
            (Tissue::Epithelial, 1),
            (Tissue::Granulation, 2),
            (Tissue::Slough, 3),
            (Tissue::Necrotic, 4),
        ];
        for (amount, expected) in exudate {
            assert_eq!(amount.push_subscore(), expected, "{amount:?}");
        }
        for (kind, expected) in tissue {
            assert_eq!(kind.push_subscore(), expected, "{kind:?}");
        }
        // Every combination adds up, from 0 (healed) to 17.
        for (amount, e) in exudate {
            for (kind, t) in tissue {
                let score = push(50, 30, kind, amount); // 15 cm²: area 9
                assert_eq!(score.total, 9 + e + t, "{amount:?} {kind:?}");
            }
        }
        assert_eq!(push(0, 0, Tissue::Closed, Exudate::None).total, 0);
        assert_eq!(push(1000, 1000, Tissue::Necrotic, Exudate::Heavy).total, 17);
    }

    #[test]
    fn areas_are_labelled_by_method_and_rounded_to_the_hundredth() {
        assert_eq!(area_cm2(AreaMethod::Rectangle, 43, 27), 11.61);
        assert_eq!(area_cm2(AreaMethod::Ellipse, 43, 27), 9.12); // π/4 × 11.61 = 9.118…
        assert_eq!(area_cm2(AreaMethod::Ellipse, 0, 27), 0.0);
    }

    fn point(id: &str, day: i64, length_mm: i64, width_mm: i64) -> Point {
        Point {
            assessment_id: id.into(),
            assessed_at: Timestamp::UNIX_EPOCH + SignedDuration::from_hours(24 * day),
            length_mm,
            width_mm,
            tissue: Tissue::Granulation,
            exudate: Exudate::Light,
            infection_signs: Vec::new(),
        }
    }

    #[test]
    fn reductions_follow_the_baseline_and_the_assessment_closest_to_four_weeks_before() {
        let series = [
            point("a", 0, 50, 40),   // 20 cm², baseline
            point("b", 7, 50, 36),   // 18 cm²
            point("c", 20, 40, 40),  // 16 cm²
            point("d", 35, 40, 30),  // 12 cm²: 4-week reference candidates b (28 d)
            point("e", 49, 30, 20),  // 6 cm²: candidates c (29 d) only
            point("f", 100, 10, 10), // 1 cm²: nothing 21-35 days before
        ];
        let f = |i| figures(&series, i);
        assert!(f(0).baseline && f(0).from_baseline.is_none() && f(0).four_weeks.is_none());
        assert_eq!(f(1).from_baseline, Some(10.0));
        assert_eq!(f(3).from_baseline, Some(40.0));
        assert_eq!(f(3).four_weeks, Some(("b".into(), 33.3)));
        assert_eq!(f(4).four_weeks, Some(("c".into(), 62.5)));
        assert_eq!(f(5).four_weeks, None);
        assert_eq!(f(5).from_baseline, Some(95.0));
    }

    #[test]
    fn the_four_week_reference_prefers_the_earlier_on_a_tie_and_stays_within_21_to_35_days() {
        let series = [
            point("a", 0, 10, 10),
            point("b", 26, 10, 10),
            point("c", 30, 10, 10),
            point("d", 56, 10, 10),
        ];
        // d is 30 days after b and 26 after c: both 2 days from 28; the earlier (b) wins.
        assert_eq!(four_week_reference(&series, 3), Some(1));
        let edge = [point("a", 0, 10, 10), point("b", 21, 10, 10)];
        assert_eq!(four_week_reference(&edge, 1), Some(0), "21 days is in");
        let outside = [point("a", 0, 10, 10), point("b", 36, 10, 10)];
        assert_eq!(four_week_reference(&outside, 1), None, "36 days is out");
    }

    #[test]
    fn each_alert_rule_fires_at_its_threshold() {
        let rules = Rules::default();
        let causes = |series: &[Point], i| -> Vec<AlertCause> {
            assessment_alerts("w", 1, series, i, &rules)
                .into_iter()
                .map(|a| a.cause)
                .collect()
        };
        // +10 % exactly raises AREA_INCREASE; +9 % does not.
        let plus_ten = [point("a", 0, 100, 100), point("b", 7, 110, 100)];
        assert_eq!(causes(&plus_ten, 1), vec![AlertCause::AreaIncrease]);
        let plus_nine = [point("a", 0, 100, 100), point("b", 7, 109, 100)];
        assert!(causes(&plus_nine, 1).is_empty());
        // PUSH +2 raises PUSH_INCREASE (exudate light → heavy).
        let mut worse = point("b", 7, 100, 100);
        worse.exudate = Exudate::Heavy;
        assert_eq!(
            causes(&[point("a", 0, 100, 100), worse], 1),
            vec![AlertCause::PushIncrease]
        );
        // Infection signs.
        let mut infected = point("a", 0, 100, 100);
        infected.infection_signs = vec![1, 5];
        assert_eq!(causes(&[infected], 0), vec![AlertCause::InfectionSigns]);
        // 4 weeks: 39 % reduction raises, 40 % does not, before 28 days nothing.
        let slow = [point("a", 0, 100, 100), point("b", 28, 61, 100)];
        assert_eq!(causes(&slow, 1), vec![AlertCause::InsufficientReduction]);
        let enough = [point("a", 0, 100, 100), point("b", 28, 60, 100)];
        assert!(causes(&enough, 1).is_empty());
        let early = [point("a", 0, 100, 100), point("b", 27, 90, 100)];
        assert!(causes(&early, 1).is_empty());
    }

    #[test]
    fn the_reduction_alert_says_whether_the_wound_shrank_or_grew() {
        let rules = Rules::default();
        let summary = |series: &[Point]| {
            assessment_alerts("w", 1, series, 1, &rules)
                .into_iter()
                .find(|d| d.cause == AlertCause::InsufficientReduction)
                .map(|d| d.summary)
                .expect("an insufficient reduction")
        };
        assert_eq!(
            summary(&[point("a", 0, 100, 100), point("b", 28, 90, 100)]),
            "Surface réduite de 10 % en 28 jours (réduction attendue d'au moins 40 %)"
        );
        assert_eq!(
            summary(&[point("a", 0, 100, 100), point("b", 28, 100, 100)]),
            "Surface inchangée en 28 jours (réduction attendue d'au moins 40 %)"
        );
        assert!(
            summary(&[point("a", 0, 100, 100), point("b", 28, 148, 100)])
                .starts_with("Surface augmentée de 48 % en 28 jours"),
        );
    }

    #[test]
    fn the_healing_trend_needs_two_points_a_week_apart_and_lets_deterioration_win() {
        let rules = Rules::default();
        let trend = |series: &[Point]| healing_trend(series, false, &rules);
        assert_eq!(trend(&[]), HealingTrend::InsufficientData);
        assert_eq!(
            trend(&[point("a", 0, 50, 50), point("b", 3, 40, 40)]),
            HealingTrend::InsufficientData,
            "3 days apart"
        );
        assert_eq!(
            trend(&[point("a", 0, 50, 50), point("b", 14, 40, 40)]),
            HealingTrend::Improving
        );
        assert_eq!(
            trend(&[point("a", 0, 50, 50), point("b", 14, 50, 48)]),
            HealingTrend::Stable
        );
        let mut sloughy = point("b", 14, 40, 40);
        sloughy.tissue = Tissue::Necrotic;
        sloughy.exudate = Exudate::Heavy;
        assert_eq!(
            trend(&[point("a", 0, 50, 50), sloughy]),
            HealingTrend::Deteriorating,
            "area down but PUSH up"
        );
        let mut closed = point("b", 14, 0, 0);
        closed.tissue = Tissue::Closed;
        assert_eq!(
            trend(&[point("a", 0, 50, 50), closed]),
            HealingTrend::Healed
        );
        assert_eq!(healing_trend(&[], true, &rules), HealingTrend::Healed);
    }

    #[test]
    fn the_area_slope_is_a_least_squares_fit_in_cm2_per_week() {
        let series = [
            point("a", 0, 100, 100), // 100 cm²
            point("b", 7, 100, 90),  // 90
            point("c", 14, 100, 80), // 80
        ];
        assert_eq!(
            area_change_per_week(&series, AreaMethod::Rectangle),
            Some(-10.0)
        );
        assert_eq!(
            area_change_per_week(&series[..1], AreaMethod::Rectangle),
            None
        );
    }
}
