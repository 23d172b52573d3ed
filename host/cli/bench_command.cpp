// placeholder: filled in by the work in progress
namespace d2r::cli {}
