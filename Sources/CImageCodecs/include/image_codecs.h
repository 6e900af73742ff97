// C shim around libpng and libjpeg: both report fatal errors by longjmp, which Swift cannot
// catch, so every call into them happens here behind setjmp.
#pragma once
