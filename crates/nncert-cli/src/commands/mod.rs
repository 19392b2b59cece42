pub mod certify;
pub mod demo;
pub mod fp_attack;
pub mod info;
pub mod run;
pub mod train;
pub mod verify;
pub mod vnncomp;
