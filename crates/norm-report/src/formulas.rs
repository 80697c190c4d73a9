//! The forward and backward formulas of LayerNorm and RMSNorm, each as MathML for the
//! page (native in browsers: no script, no network) and as plain text for `report.md`
//! (derivations: `docs/math.md`).

/// One block of formulas.
#[derive(Debug, Clone, Copy)]
pub struct Formula {
    /// Heading, e.g. "LayerNorm, forward".
    pub heading: &'static str,
    /// What the symbols mean, one sentence (plain text).
    pub note: &'static str,
    /// The equations as `<math display="block">` elements.
    pub mathml: &'static str,
    /// The same equations as plain text, one per line.
    pub text: &'static str,
}

/// x̂ᵢ as MathML.
macro_rules! xhat_i {
    () => {
        "<msub><mover accent=\"true\"><mi>x</mi><mo>^</mo></mover><mi>i</mi></msub>"
    };
}
/// x̂ as MathML.
macro_rules! xhat {
    () => {
        "<mover accent=\"true\"><mi>x</mi><mo>^</mo></mover>"
    };
}
/// (1/D) Σᵢ as MathML.
macro_rules! mean_sum {
    () => {
        "<mfrac><mn>1</mn><mi>D</mi></mfrac><munderover><mo>∑</mo><mrow><mi>i</mi><mo>=</mo><mn>1</mn></mrow><mi>D</mi></munderover>"
    };
}

/// The formula blocks, in the order the page shows them.
pub const FORMULAS: [Formula; 5] = [
    Formula {
        heading: "LayerNorm, forward",
        note: "Per row x of length D; two passes over the row, never E[x²] − E[x]².",
        mathml: concat!(
            "<math display=\"block\"><mi>μ</mi><mo>=</mo>",
            mean_sum!(),
            "<msub><mi>x</mi><mi>i</mi></msub></math>",
            "<math display=\"block\"><msup><mi>σ</mi><mn>2</mn></msup><mo>=</mo>",
            mean_sum!(),
            "<msup><mrow><mo>(</mo><msub><mi>x</mi><mi>i</mi></msub><mo>−</mo><mi>μ</mi><mo>)</mo></mrow><mn>2</mn></msup></math>",
            "<math display=\"block\">",
            xhat_i!(),
            "<mo>=</mo><mfrac><mrow><msub><mi>x</mi><mi>i</mi></msub><mo>−</mo><mi>μ</mi></mrow><msqrt><msup><mi>σ</mi><mn>2</mn></msup><mo>+</mo><mi>ε</mi></msqrt></mfrac>",
            "<mspace width=\"2em\"/><msub><mi>y</mi><mi>i</mi></msub><mo>=</mo><msub><mi>γ</mi><mi>i</mi></msub><mo>⁢</mo>",
            xhat_i!(),
            "<mo>+</mo><msub><mi>β</mi><mi>i</mi></msub></math>"
        ),
        text: "μ  = (1/D) Σᵢ xᵢ
σ² = (1/D) Σᵢ (xᵢ − μ)²
x̂ᵢ = (xᵢ − μ) / √(σ² + ε)
yᵢ = γᵢ · x̂ᵢ + βᵢ",
    },
    Formula {
        heading: "LayerNorm, backward",
        note: "Given dy; r = 1/√(σ² + ε) and gᵢ = γᵢ · dyᵢ; mean(·) averages over the row.",
        mathml: concat!(
            "<math display=\"block\"><mi>d</mi><msub><mi>x</mi><mi>i</mi></msub><mo>=</mo><mi>r</mi><mo>⁢</mo><mrow><mo>(</mo><msub><mi>g</mi><mi>i</mi></msub><mo>−</mo><mi>mean</mi><mo>⁡</mo><mrow><mo>(</mo><mi>g</mi><mo>)</mo></mrow><mo>−</mo>",
            xhat_i!(),
            "<mo>⁢</mo><mi>mean</mi><mo>⁡</mo><mrow><mo>(</mo><mi>g</mi><mo>⊙</mo>",
            xhat!(),
            "<mo>)</mo></mrow><mo>)</mo></mrow></math>",
            "<math display=\"block\"><mi>d</mi><msub><mi>γ</mi><mi>i</mi></msub><mo>=</mo><munder><mo>∑</mo><mtext>rows</mtext></munder><mi>d</mi><msub><mi>y</mi><mi>i</mi></msub><mo>⁢</mo>",
            xhat_i!(),
            "<mspace width=\"2em\"/><mi>d</mi><msub><mi>β</mi><mi>i</mi></msub><mo>=</mo><munder><mo>∑</mo><mtext>rows</mtext></munder><mi>d</mi><msub><mi>y</mi><mi>i</mi></msub></math>"
        ),
        text: "dxᵢ = r · ( gᵢ − mean(g) − x̂ᵢ · mean(g ⊙ x̂) )
dγᵢ = Σ_rows dyᵢ · x̂ᵢ
dβᵢ = Σ_rows dyᵢ",
    },
    Formula {
        heading: "RMSNorm, forward",
        note: "No mean subtraction and no β.",
        mathml: concat!(
            "<math display=\"block\"><mi>rms</mi><mo>=</mo><msqrt>",
            mean_sum!(),
            "<msubsup><mi>x</mi><mi>i</mi><mn>2</mn></msubsup><mo>+</mo><mi>ε</mi></msqrt></math>",
            "<math display=\"block\">",
            xhat_i!(),
            "<mo>=</mo><mfrac><msub><mi>x</mi><mi>i</mi></msub><mi>rms</mi></mfrac><mspace width=\"2em\"/><msub><mi>y</mi><mi>i</mi></msub><mo>=</mo><msub><mi>γ</mi><mi>i</mi></msub><mo>⁢</mo>",
            xhat_i!(),
            "</math>"
        ),
        text: "rms = √( (1/D) Σᵢ xᵢ² + ε )
x̂ᵢ  = xᵢ / rms
yᵢ  = γᵢ · x̂ᵢ",
    },
    Formula {
        heading: "RMSNorm, backward",
        note: "r = 1/rms and gᵢ = γᵢ · dyᵢ.",
        mathml: concat!(
            "<math display=\"block\"><mi>d</mi><msub><mi>x</mi><mi>i</mi></msub><mo>=</mo><mi>r</mi><mo>⁢</mo><mrow><mo>(</mo><msub><mi>g</mi><mi>i</mi></msub><mo>−</mo>",
            xhat_i!(),
            "<mo>⁢</mo><mi>mean</mi><mo>⁡</mo><mrow><mo>(</mo><mi>g</mi><mo>⊙</mo>",
            xhat!(),
            "<mo>)</mo></mrow><mo>)</mo></mrow></math>",
            "<math display=\"block\"><mi>d</mi><msub><mi>γ</mi><mi>i</mi></msub><mo>=</mo><munder><mo>∑</mo><mtext>rows</mtext></munder><mi>d</mi><msub><mi>y</mi><mi>i</mi></msub><mo>⁢</mo>",
            xhat_i!(),
            "</math>"
        ),
        text: "dxᵢ = r · ( gᵢ − x̂ᵢ · mean(g ⊙ x̂) )
dγᵢ = Σ_rows dyᵢ · x̂ᵢ",
    },
    Formula {
        heading: "How the two relate",
        note: "Same γ and ε; β is added after. The forward pass saves μ and r (or r); the \
               backward never recomputes them.",
        mathml: "<math display=\"block\"><mi>LayerNorm</mi><mo>⁡</mo><mrow><mo>(</mo><mi>x</mi><mo>)</mo></mrow><mo>=</mo><mi>RMSNorm</mi><mo>⁡</mo><mrow><mo>(</mo><mi>x</mi><mo>−</mo><mi>μ</mi><mo>)</mo></mrow></math>",
        text: "LayerNorm(x) = RMSNorm(x − μ)",
    },
];

#[cfg(test)]
mod tests {
    use super::FORMULAS;

    #[test]
    fn mathml_is_balanced_and_scriptless() {
        for f in FORMULAS {
            for tag in [
                "math",
                "mrow",
                "msub",
                "msup",
                "mfrac",
                "msqrt",
                "mover",
                "munder",
                "munderover",
                "msubsup",
            ] {
                let open = f.mathml.matches(&format!("<{tag}>")).count()
                    + f.mathml.matches(&format!("<{tag} ")).count();
                let close = f.mathml.matches(&format!("</{tag}>")).count();
                assert_eq!(open, close, "{}: <{tag}> unbalanced", f.heading);
            }
            assert!(!f.mathml.contains("<script"));
            assert!(!f.text.contains('<'), "{}: plain text has markup", f.heading);
        }
    }
}
