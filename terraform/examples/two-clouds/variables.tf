variable "endpoint" {
  description = "The registry's REST API (`meshfed serve --api`)."
  type        = string
  default     = "http://127.0.0.1:9470"
}

variable "token_file" {
  description = "A file holding an API token, e.g. `<data-dir>/admin.token` written by `meshfed serve` (null: use MESHFED_TOKEN)."
  type        = string
  default     = null
}
