//! The result data model every study returns: figure data as plain panels (histograms,
//! scatter, lines, heatmaps, bars, a block diagram) and measured findings. No drawing here.

use serde::Serialize;

use crate::references::Reference;

/// Everything a study produced: what to draw and what was measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyResult {
    /// Stable id, e.g. `layernorm-distribution`.
    pub id: String,
    /// Human title, e.g. "LayerNorm Distribution".
    pub title: String,
    /// A short explanation of what the study shows and how (plain text paragraphs).
    pub explanation: Vec<String>,
    /// The figure, as data.
    pub figure: Figure,
    /// What to look at in the figure (panels named by letter); see
    /// [`Study::caption`](crate::Study::caption).
    pub caption: String,
    /// Measured findings, deterministic for a given seed. Exactly one has `summary: true`:
    /// the one backing the seed's "Summary of Findings" line for this study.
    pub findings: Vec<Finding>,
    /// The study's full configuration for this run (the same table `--print-config`
    /// shows), so a data file says exactly what produced it.
    pub config: toml::Table,
    /// Wall-clock measurements (vary run to run); kept apart from `findings` and not
    /// serialized with the deterministic data.
    #[serde(skip)]
    pub timings: Vec<Finding>,
}

/// One measured number and the sentence it supports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Stable machine name, e.g. `max_abs_output_mean` (data files keep it).
    pub name: String,
    /// A plain-language label for the page, e.g. "Largest |per-sample output mean|".
    pub label: String,
    /// The measured value (may be NaN or infinite where the study shows that on purpose).
    pub value: f64,
    /// Unit or kind of the value, e.g. "", "ratio", "orders of magnitude", "×".
    pub unit: String,
    /// The sentence the value supports, written from the value
    /// (e.g. "per-sample output mean within 3.2e-8 of 0").
    pub statement: String,
    /// True for the finding that backs the study's summary line.
    pub summary: bool,
    /// The papers this finding rests on (compared with, or a claim taken from).
    pub refs: Vec<Reference>,
}

impl Finding {
    /// A finding `name` with `value` in `unit`, supporting `statement`. Give it a
    /// plain-language [`label`](Finding::labelled) before it reaches a page.
    pub fn new(name: &str, value: f64, unit: &str, statement: String) -> Self {
        Self {
            name: name.to_owned(),
            label: String::new(),
            value,
            unit: unit.to_owned(),
            statement,
            summary: false,
            refs: Vec::new(),
        }
    }

    /// The same finding with a plain-language label.
    #[must_use]
    pub fn labelled(mut self, label: &str) -> Self {
        self.label = label.to_owned();
        self
    }

    /// The same finding citing `refs`.
    #[must_use]
    pub fn cite(mut self, refs: &[Reference]) -> Self {
        self.refs.extend_from_slice(refs);
        self
    }

    /// The same finding marked as the one backing the study's summary line.
    #[must_use]
    pub fn summary(mut self) -> Self {
        self.summary = true;
        self
    }
}

/// A multi-panel figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// The figure's caption (the seed's figure title).
    pub title: String,
    /// Panels in reading order, laid out in a grid of `columns` columns.
    pub panels: Vec<Panel>,
    /// Number of grid columns.
    pub columns: usize,
}

/// One panel of a figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Panel {
    /// Panel title.
    pub title: String,
    /// X-axis label (empty for diagrams).
    pub x_label: String,
    /// Y-axis label (empty for diagrams).
    pub y_label: String,
    /// What to draw.
    pub content: PanelContent,
}

/// Axis scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Scale {
    /// Linear axis.
    Linear,
    /// Base-10 logarithmic axis (all plotted values must be > 0).
    Log,
}

/// Line drawing style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LineStyle {
    /// Solid line.
    Solid,
    /// Dashed line (references, predictions).
    Dashed,
    /// Solid line with a marker at each point.
    Markers,
}

/// What a panel draws.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum PanelContent {
    /// Histograms (as densities) with optional line overlays such as a normal density.
    Histogram {
        /// Histogram series drawn semi-transparent, in order.
        series: Vec<HistogramSeries>,
        /// Curves drawn on top (e.g. the N(0,1) density).
        overlays: Vec<LineSeries>,
    },
    /// Point clouds, with optional reference lines (e.g. y = x).
    Scatter {
        /// Point series.
        series: Vec<ScatterSeries>,
        /// Lines drawn on top.
        lines: Vec<LineSeries>,
        /// X scale.
        x_scale: Scale,
        /// Y scale.
        y_scale: Scale,
    },
    /// Line chart.
    Lines {
        /// Line series.
        series: Vec<LineSeries>,
        /// X scale.
        x_scale: Scale,
        /// Y scale.
        y_scale: Scale,
    },
    /// Grouped bars.
    Bars {
        /// Category labels along x.
        categories: Vec<String>,
        /// One bar per category per series.
        series: Vec<BarSeries>,
        /// Y scale.
        y_scale: Scale,
    },
    /// A matrix of values with a colour bar.
    Heatmap(Heatmap),
    /// A block diagram (study 7).
    Diagram(BlockDiagram),
}

/// A histogram: bin edges and densities (`density.len() + 1 == edges.len()`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramSeries {
    /// Legend label.
    pub label: String,
    /// Bin edges, increasing.
    pub edges: Vec<f64>,
    /// Density per bin (integrates to 1 over the edges).
    pub density: Vec<f64>,
}

/// A polyline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineSeries {
    /// Legend label.
    pub label: String,
    /// X coordinates.
    pub x: Vec<f64>,
    /// Y coordinates.
    pub y: Vec<f64>,
    /// Drawing style.
    pub style: LineStyle,
}

/// A point cloud.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScatterSeries {
    /// Legend label.
    pub label: String,
    /// X coordinates.
    pub x: Vec<f64>,
    /// Y coordinates.
    pub y: Vec<f64>,
}

/// One bar per category.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BarSeries {
    /// Legend label.
    pub label: String,
    /// One value per category.
    pub values: Vec<f64>,
}

/// A row-major matrix drawn as coloured cells.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Heatmap {
    /// Number of rows (drawn top to bottom).
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// `rows * cols` values, row-major.
    pub values: Vec<f64>,
    /// Label of the colour bar.
    pub colorbar_label: String,
    /// The colour scale's `(low, high)` ends (values outside are clamped); `None`: the
    /// range of the values. Heatmaps meant to be compared side by side share one.
    pub range: Option<(f64, f64)>,
}

/// A diagram of columns of stacked blocks with residual skip arrows (study 7).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockDiagram {
    /// Side-by-side columns (e.g. Post-Norm, Pre-Norm).
    pub columns: Vec<DiagramColumn>,
    /// Legend entries: one per block kind shown, plus the skip connection.
    pub legend: Vec<(BlockKind, String)>,
}

/// One column of a block diagram: blocks from bottom (input) to top (output).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiagramColumn {
    /// Column heading, e.g. "Post-Norm".
    pub title: String,
    /// Text under the column, e.g. "Original Transformer, BERT".
    pub models: String,
    /// Blocks, bottom to top; consecutive blocks are joined by arrows.
    pub blocks: Vec<Block>,
    /// Residual skips: from the input of block `from` to the `Add` block `to`.
    pub skips: Vec<(usize, usize)>,
}

/// One box of a block diagram.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Block {
    /// Text in the box.
    pub label: String,
    /// Its kind (sets the colour).
    pub kind: BlockKind,
}

/// Kinds of diagram boxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BlockKind {
    /// Input or output of the block.
    Io,
    /// A normalization layer.
    Norm,
    /// Self-attention.
    Attention,
    /// Feed-forward network.
    FeedForward,
    /// Residual addition (⊕).
    Add,
    /// The residual skip connection (legend only).
    Skip,
}
