pub mod certify;
pub mod demo;
pub mod info;
pub mod run;
pub mod verify;
pub mod vnncomp;
