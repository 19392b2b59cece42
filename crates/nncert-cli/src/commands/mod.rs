pub mod certify;
pub mod demo;
pub mod info;
pub mod input_split;
pub mod run;
pub mod vnncomp;
