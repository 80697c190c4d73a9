//! The papers the findings rest on. A finding names its references with
//! [`Finding::cite`](crate::result::Finding::cite); the report lists those cited.

use serde::Serialize;

/// A paper a finding rests on. Serialized as its [`Reference::key`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reference {
    /// Ioffe & Szegedy 2015: Batch Normalization.
    Ioffe2015,
    /// Ba, Kiros & Hinton 2016: Layer Normalization.
    Ba2016,
    /// Vaswani et al. 2017: Attention Is All You Need (the Post-Norm Transformer).
    Vaswani2017,
    /// Zhang & Sennrich 2019: Root Mean Square Layer Normalization.
    ZhangSennrich2019,
    /// Xiong et al. 2020: On Layer Normalization in the Transformer Architecture.
    Xiong2020,
    /// Liu et al. 2020: Understanding the Difficulty of Training Transformers.
    Liu2020,
    /// Wang et al. 2022: DeepNet: Scaling Transformers to 1,000 Layers.
    Wang2022,
    /// Kim et al. 2025: Peri-LN: Revisiting Layer Normalization in the Transformer
    /// Architecture.
    Kim2025,
    /// Schoenholz, Gilmer, Ganguli & Sohl-Dickstein 2017: Deep Information Propagation
    /// (the mean-field recursion for gradients through deep random nets).
    Schoenholz2017,
}

impl Reference {
    /// Every reference, in the order a reference list shows them.
    pub fn all() -> &'static [Reference] {
        &[
            Self::Ioffe2015,
            Self::Ba2016,
            Self::Vaswani2017,
            Self::ZhangSennrich2019,
            Self::Xiong2020,
            Self::Liu2020,
            Self::Wang2022,
            Self::Kim2025,
            Self::Schoenholz2017,
        ]
    }

    /// A stable key for data files and in-page anchors, e.g. `xiong2020`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Ioffe2015 => "ioffe2015",
            Self::Ba2016 => "ba2016",
            Self::Vaswani2017 => "vaswani2017",
            Self::ZhangSennrich2019 => "zhang2019",
            Self::Xiong2020 => "xiong2020",
            Self::Liu2020 => "liu2020",
            Self::Wang2022 => "wang2022",
            Self::Kim2025 => "kim2025",
            Self::Schoenholz2017 => "schoenholz2017",
        }
    }

    /// The short form for running text, e.g. "Xiong et al. 2020".
    pub fn short(self) -> &'static str {
        match self {
            Self::Ioffe2015 => "Ioffe & Szegedy 2015",
            Self::Ba2016 => "Ba et al. 2016",
            Self::Vaswani2017 => "Vaswani et al. 2017",
            Self::ZhangSennrich2019 => "Zhang & Sennrich 2019",
            Self::Xiong2020 => "Xiong et al. 2020",
            Self::Liu2020 => "Liu et al. 2020",
            Self::Wang2022 => "Wang et al. 2022",
            Self::Kim2025 => "Kim et al. 2025",
            Self::Schoenholz2017 => "Schoenholz et al. 2017",
        }
    }

    /// The full entry: authors, title, venue, year, arXiv id.
    pub fn full(self) -> &'static str {
        match self {
            Self::Ioffe2015 => {
                "Sergey Ioffe, Christian Szegedy. Batch Normalization: Accelerating Deep Network \
                 Training by Reducing Internal Covariate Shift. ICML 2015. arXiv:1502.03167."
            }
            Self::Ba2016 => {
                "Jimmy Lei Ba, Jamie Ryan Kiros, Geoffrey E. Hinton. Layer Normalization. 2016. \
                 arXiv:1607.06450."
            }
            Self::Vaswani2017 => {
                "Ashish Vaswani, Noam Shazeer, Niki Parmar, Jakob Uszkoreit, Llion Jones, Aidan N. \
                 Gomez, Łukasz Kaiser, Illia Polosukhin. Attention Is All You Need. NeurIPS 2017. \
                 arXiv:1706.03762."
            }
            Self::ZhangSennrich2019 => {
                "Biao Zhang, Rico Sennrich. Root Mean Square Layer Normalization. NeurIPS 2019. \
                 arXiv:1910.07467."
            }
            Self::Xiong2020 => {
                "Ruibin Xiong, Yunchang Yang, Di He, Kai Zheng, Shuxin Zheng, Chen Xing, Huishuai \
                 Zhang, Yanyan Lan, Liwei Wang, Tie-Yan Liu. On Layer Normalization in the \
                 Transformer Architecture. ICML 2020. arXiv:2002.04745."
            }
            Self::Liu2020 => {
                "Liyuan Liu, Xiaodong Liu, Jianfeng Gao, Weizhu Chen, Jiawei Han. Understanding the \
                 Difficulty of Training Transformers. EMNLP 2020. arXiv:2004.08249."
            }
            Self::Wang2022 => {
                "Hongyu Wang, Shuming Ma, Li Dong, Shaohan Huang, Dongdong Zhang, Furu Wei. DeepNet: \
                 Scaling Transformers to 1,000 Layers. 2022. arXiv:2203.00555."
            }
            Self::Kim2025 => {
                "Jeonghoon Kim, Byeongchan Lee, Cheonbok Park, Yeontaek Oh, Beomjun Kim, Taehwan \
                 Yoo, Seongjin Shin, Dongyoon Han, Jinwoo Shin, Kang Min Yoo. Peri-LN: Revisiting \
                 Normalization Layer in the Transformer Architecture. ICML 2025. arXiv:2502.02732."
            }
            Self::Schoenholz2017 => {
                "Samuel S. Schoenholz, Justin Gilmer, Surya Ganguli, Jascha Sohl-Dickstein. Deep \
                 Information Propagation. ICLR 2017. arXiv:1611.01232."
            }
        }
    }
}

impl Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_entries_name_their_year() {
        let mut keys: Vec<&str> = Reference::all().iter().map(|r| r.key()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), Reference::all().len());
        for r in Reference::all() {
            let year = &r.key()[r.key().len() - 4..];
            assert!(r.short().ends_with(year), "{r:?}");
            assert!(r.full().contains(year) && r.full().contains("arXiv:"), "{r:?}");
        }
    }
}
