package com.srprune.demo;

import android.Manifest;
import android.app.Activity;
import android.content.Intent;
import android.content.pm.PackageManager;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.graphics.SurfaceTexture;
import android.hardware.Camera;
import android.media.MediaMetadataRetriever;
import android.net.Uri;
import android.os.Bundle;
import android.os.SystemClock;
import android.view.TextureView;
import android.view.View;
import android.widget.Button;
import android.widget.LinearLayout;
import android.widget.SeekBar;
import android.widget.TextView;
import java.io.IOException;
import java.io.InputStream;
import java.util.Locale;
import java.util.function.Supplier;
import org.json.JSONObject;

/**
 * One screen: sources (photo, video, camera, bundled test image), the split view bicubic | model,
 * per-frame ms and fps, and the thread count. The layout is built in code so the Java compiles
 * without generated resources (it is checked here with javac against stubs of the Android classes).
 * The camera uses android.hardware.Camera (deprecated, still on every API 26+ phone): a preview into a
 * TextureView whose getBitmap() hands frames over is far less code than Camera2 + YUV conversion.
 */
@SuppressWarnings("deprecation")
public final class MainActivity extends Activity implements FrameProcessor.Listener {
    private static final int PICK_PHOTO = 1, PICK_VIDEO = 2, CAMERA_PERMISSION = 3;

    private SplitView split;
    private TextView status, numbers;
    private TextureView preview;
    private FrameProcessor processor;
    private ModelInfo info;
    private Camera camera;
    private volatile Thread videoThread;
    private String reference = "";

    @Override
    protected void onCreate(Bundle state) {
        super.onCreate(state);
        LinearLayout root = new LinearLayout(this);
        root.setOrientation(LinearLayout.VERTICAL);
        LinearLayout bar = new LinearLayout(this);
        bar.setOrientation(LinearLayout.HORIZONTAL);
        bar.addView(button("Photo", new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                pick("image/*", PICK_PHOTO);
            }
        }));
        bar.addView(button("Video", new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                pick("video/*", PICK_VIDEO);
            }
        }));
        bar.addView(button("Camera", new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                startCamera();
            }
        }));
        bar.addView(button("Test image", new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                runTestImage();
            }
        }));
        TextView threadsLabel = new TextView(this);
        int cores = Math.max(1, Runtime.getRuntime().availableProcessors());
        threadsLabel.setText("threads " + Math.min(cores, 4));
        SeekBar threads = new SeekBar(this);
        threads.setMax(cores - 1);
        threads.setProgress(Math.min(cores, 4) - 1);
        threads.setOnSeekBarChangeListener(new SeekBar.OnSeekBarChangeListener() {
            @Override
            public void onProgressChanged(SeekBar s, int progress, boolean fromUser) {
                threadsLabel.setText("threads " + (progress + 1));
                if (processor != null) processor.setThreads(progress + 1);
            }

            @Override
            public void onStartTrackingTouch(SeekBar s) {}

            @Override
            public void onStopTrackingTouch(SeekBar s) {}
        });
        bar.addView(threadsLabel);
        bar.addView(threads, new LinearLayout.LayoutParams(300, LinearLayout.LayoutParams.WRAP_CONTENT));
        status = new TextView(this);
        numbers = new TextView(this);
        split = new SplitView(this);
        preview = new TextureView(this);
        preview.setVisibility(View.GONE);
        root.addView(bar);
        root.addView(status);
        root.addView(numbers);
        root.addView(preview, new LinearLayout.LayoutParams(320, 180));  // the raw camera, small
        root.addView(split, new LinearLayout.LayoutParams(LinearLayout.LayoutParams.MATCH_PARENT, 0, 1f));
        setContentView(root);
        openModel(Math.min(cores, 4));
    }

    private Button button(String text, View.OnClickListener click) {
        Button b = new Button(this);
        b.setText(text);
        b.setOnClickListener(click);
        return b;
    }

    /** Errors the user can meet (no model, wrong ABI/scale, a bad argument, OOM) end here as a message. */
    private void openModel(int threads) {
        NativeEngine engine = null;
        try {
            info = ModelInfo.load(getAssets());
            engine = NativeEngine.open(getApplicationInfo().nativeLibraryDir, threads);
            info.checkAgainst(engine);
            processor = new FrameProcessor(engine, this);
            status.setText(engine.describe() + String.format(Locale.US, "  (%dx%d -> %dx%d)", info.inWidth,
                    info.inHeight, info.outWidth, info.outHeight));
        } catch (RuntimeException | OutOfMemoryError e) {
            if (engine != null) engine.close();
            processor = null;
            onError(e.getMessage());
        }
    }

    private void pick(String type, int code) {
        Intent intent = new Intent(Intent.ACTION_GET_CONTENT);
        intent.setType(type);
        startActivityForResult(intent, code);
    }

    @Override
    protected void onActivityResult(int code, int result, Intent data) {
        if (result != RESULT_OK || data == null || data.getData() == null || processor == null) return;
        stopSources();
        if (code == PICK_PHOTO) {
            try (InputStream in = getContentResolver().openInputStream(data.getData())) {
                Bitmap photo = BitmapFactory.decodeStream(in);
                if (photo == null) onError("cannot decode that image");
                else processor.offer(photo);
            } catch (IOException | OutOfMemoryError e) {
                onError("cannot read that image: " + e.getMessage());
            }
        } else if (code == PICK_VIDEO) {
            playVideo(data.getData());
        }
    }

    /** Frames are taken at the wall-clock position, so a slow model skips video frames instead of lagging. */
    private void playVideo(Uri uri) {
        Thread t = new Thread(new Runnable() {
            @Override
            public void run() {
                playFrames(uri);
            }
        }, "video");
        videoThread = t;
        t.start();
    }

    private void playFrames(Uri uri) {
        MediaMetadataRetriever r = new MediaMetadataRetriever();
        try {
            r.setDataSource(this, uri);
            String d = r.extractMetadata(MediaMetadataRetriever.METADATA_KEY_DURATION);
            long durationUs = (d == null ? 0 : Long.parseLong(d)) * 1000;
            long start = SystemClock.elapsedRealtime();
            while (videoThread == Thread.currentThread()) {
                long posUs = (SystemClock.elapsedRealtime() - start) * 1000;
                if (posUs > durationUs) break;
                Bitmap frame = r.getFrameAtTime(posUs, MediaMetadataRetriever.OPTION_CLOSEST);
                if (frame != null) processor.offer(frame);
            }
        } catch (final RuntimeException e) {
            runOnUiThread(new Runnable() {
                @Override
                public void run() {
                    onError("cannot play that video: " + e.getMessage());
                }
            });
        } finally {
            try {
                r.release();
            } catch (Exception ignored) {
                // release() throws IOException from API 29 on, nothing before; the retriever is gone either way
            }
        }
    }

    private void startCamera() {
        if (processor == null) return;
        if (checkSelfPermission(Manifest.permission.CAMERA) != PackageManager.PERMISSION_GRANTED) {
            requestPermissions(new String[] {Manifest.permission.CAMERA}, CAMERA_PERMISSION);
            return;
        }
        stopSources();
        preview.setVisibility(View.VISIBLE);
        preview.setSurfaceTextureListener(new TextureView.SurfaceTextureListener() {
            @Override
            public void onSurfaceTextureAvailable(SurfaceTexture texture, int w, int h) {
                try {
                    camera = Camera.open();
                    camera.setPreviewTexture(texture);
                    camera.startPreview();
                } catch (IOException | RuntimeException e) {
                    onError("cannot open the camera: " + e.getMessage());
                }
            }

            @Override
            public void onSurfaceTextureSizeChanged(SurfaceTexture texture, int w, int h) {}

            @Override
            public boolean onSurfaceTextureDestroyed(SurfaceTexture texture) {
                stopSources();
                return true;
            }

            @Override
            public void onSurfaceTextureUpdated(SurfaceTexture texture) {
                // a new camera frame: hand it over only when the worker is free (offer drops otherwise)
                if (processor != null) processor.offerFrom(new Supplier<Bitmap>() {
                    @Override
                    public Bitmap get() {
                        return preview.getBitmap(info.inWidth, info.inHeight);
                    }
                });
            }
        });
    }

    @Override
    public void onRequestPermissionsResult(int code, String[] permissions, int[] results) {
        if (code == CAMERA_PERMISSION && results.length > 0 && results[0] == PackageManager.PERMISSION_GRANTED) {
            startCamera();
        } else if (code == CAMERA_PERMISSION) {
            onError("camera permission denied");
        }
    }

    private void runTestImage() {
        if (processor == null) return;
        stopSources();
        try {
            Bitmap lr = BitmapFactory.decodeStream(getAssets().open("srmodel/test_lr.png"));
            Bitmap hr = BitmapFactory.decodeStream(getAssets().open("srmodel/test_hr.png"));
            JSONObject ref = new JSONObject(ModelInfo.readAsset(getAssets(), "srmodel/reference.json"));
            reference = String.format(Locale.US, "  |  on the PC: bicubic %.2f dB / %.4f",
                    ref.getDouble("bicubic_psnr_y"), ref.getDouble("bicubic_ssim_y"));
            processor.offer(lr, hr);
        } catch (Exception e) {
            onError("the bundled test image is missing (stage the model again): " + e.getMessage());
        }
    }

    private void stopSources() {
        videoThread = null;
        if (camera != null) {
            camera.stopPreview();
            camera.release();
            camera = null;
        }
        preview.setVisibility(View.GONE);
    }

    @Override
    public void onFrame(Bitmap result, Bitmap bicubic, FrameProcessor.Stats s) {
        split.show(bicubic, result);
        String text = String.format(Locale.US, "model %.1f ms  frame %.1f ms  %.1f fps  (%d shown, %d dropped)",
                s.modelMs, s.frameMs, s.fps, s.processed, s.dropped);
        if (!Double.isNaN(s.psnr)) {
            text += String.format(Locale.US,
                    "\ntest image (Y, crop %d): model %.2f dB / SSIM %.4f, bicubic %.2f dB / %.4f",
                    info.scale, s.psnr, s.ssim, s.bicubicPsnr, s.bicubicSsim) + reference;
        }
        numbers.setText(text);
    }

    @Override
    public void onError(String message) {
        status.setText("error: " + message);
    }

    @Override
    protected void onPause() {
        stopSources();
        super.onPause();
    }

    @Override
    protected void onDestroy() {
        if (processor != null) processor.release();
        super.onDestroy();
    }
}
