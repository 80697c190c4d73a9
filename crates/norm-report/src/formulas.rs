//! The forward and backward formulas of LayerNorm and RMSNorm, as readable plain-text
//! math shared by the HTML page and `report.md` (derivations: `docs/math.md`).

/// `(heading, lines)` blocks, in the order the page shows them.
pub const FORMULAS: [(&str, &str); 5] = [
    (
        "LayerNorm, forward (per row x of length D)",
        "μ  = (1/D) Σᵢ xᵢ
σ² = (1/D) Σᵢ (xᵢ − μ)²          two passes over the row, never E[x²] − E[x]²
x̂ᵢ = (xᵢ − μ) / √(σ² + ε)
yᵢ = γᵢ · x̂ᵢ + βᵢ",
    ),
    (
        "LayerNorm, backward (given dy; r = 1/√(σ² + ε), gᵢ = γᵢ · dyᵢ)",
        "dxᵢ = r · ( gᵢ − mean(g) − x̂ᵢ · mean(g ⊙ x̂) )
dγᵢ = Σ_rows dyᵢ · x̂ᵢ
dβᵢ = Σ_rows dyᵢ",
    ),
    (
        "RMSNorm, forward",
        "rms = √( (1/D) Σᵢ xᵢ² + ε )
x̂ᵢ  = xᵢ / rms
yᵢ  = γᵢ · x̂ᵢ                      no mean subtraction, no β",
    ),
    (
        "RMSNorm, backward (r = 1/rms, gᵢ = γᵢ · dyᵢ)",
        "dxᵢ = r · ( gᵢ − x̂ᵢ · mean(g ⊙ x̂) )
dγᵢ = Σ_rows dyᵢ · x̂ᵢ",
    ),
    (
        "How the two relate",
        "LayerNorm(x) = RMSNorm(x − μ)      (same γ and ε; β added after)
The statistics (μ and r, or r) are saved by the forward pass; the backward never recomputes them.",
    ),
];
