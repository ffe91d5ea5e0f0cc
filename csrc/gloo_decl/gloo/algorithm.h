// See ../README.md: nothing from it is used.
#pragma once
