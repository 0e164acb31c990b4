// The product version reported by --version and GET /version.
#pragma once
#define DS_VERSION "0.1.0"
